// Load and Parse: from a file (or the built-in defaults) and the
// environment to a validated Config. Parse runs the steps in order: JSON
// checks (json.go), one parser per key (keys.go), the environment (env.go),
// then the values and checks that span several keys (checks.go).

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

const (
	// DefaultConfigPath is read when no -config is given and it exists.
	DefaultConfigPath = "/etc/spartan/spartan.json"
	// DefaultResolvConfPath supplies upstream_resolvers when the file does
	// not set them and DefaultUpstreamsPath does not exist.
	DefaultResolvConfPath = "/etc/resolv.conf"
	// DefaultUpstreamsPath is the node's upstream resolvers (resolv.conf
	// format: nameserver lines), when the config file does not set
	// upstream_resolvers. spartanctl genresolv writes it once, from the
	// resolv.conf it is about to rewrite to point at Spartan, so that the
	// original upstreams survive the rewrite; both read it.
	DefaultUpstreamsPath = "/etc/spartan/upstreams.conf"
)

// UpstreamsSource is the file upstream_resolvers default to:
// DefaultUpstreamsPath if it exists, else DefaultResolvConfPath.
func UpstreamsSource() string {
	if _, err := os.Stat(DefaultUpstreamsPath); err == nil {
		return DefaultUpstreamsPath
	}
	return DefaultResolvConfPath
}

// Load reads the configuration at path with the process environment and
// the node's upstreams file (UpstreamsSource). path == "":
// DefaultConfigPath if it exists, else the built-in defaults.
func Load(path string) (*Config, error) {
	return LoadWith(path, os.Getenv, UpstreamsSource())
}

// LoadWith is Load with the environment and the resolv.conf path injected.
func LoadWith(path string, getenv func(string) string, resolvConf string) (*Config, error) {
	return loadFrom(path, DefaultConfigPath, getenv, resolvConf)
}

// loadFrom is LoadWith with the default file injected (tests).
func loadFrom(path, defaultPath string, getenv func(string) string, resolvConf string) (*Config, error) {
	data, name, err := readConfigFile(path, defaultPath)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data, getenv, resolvConf)
	if err != nil {
		if name == "" {
			return nil, fmt.Errorf("built-in config: %w", err)
		}
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// readConfigFile returns the file's contents and its name, or "{}" and ""
// when path is empty and the file at defaultPath does not exist.
func readConfigFile(path, defaultPath string) ([]byte, string, error) {
	if path == "" {
		data, err := os.ReadFile(defaultPath)
		if errors.Is(err, fs.ErrNotExist) {
			return []byte("{}"), "", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read config: %w", err)
		}
		return data, defaultPath, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// An explicitly named file that is missing is an operator error,
		// never a reason to fall back to defaults.
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	return data, path, nil
}

// Parse parses a configuration document. getenv supplies the overriding
// environment (nil: none). resolvConf is the resolv.conf whose nameservers
// become upstream_resolvers when the document does not set them ("": none).
// All key errors found are returned joined; errors.As finds the first.
func Parse(data []byte, getenv func(string) string, resolvConf string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if err := checkSyntax(data); err != nil {
		return nil, err
	}
	if err := checkDuplicateKeys(data); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("config is not a JSON object: %w", err)
	}
	if top == nil { // the document was "null"
		return nil, errors.New("config is not a JSON object: got null")
	}

	p := &parser{cfg: Default(), set: map[string]bool{}}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		fn, ok := topLevel[k]
		if !ok {
			errs = append(errs, &KeyError{Key: k, Err: errors.New(unknownKeyMsg(k, topLevelNames()))})
			continue
		}
		v, err := decodeValue(top[k])
		if err != nil {
			errs = append(errs, &KeyError{Key: k, Err: err})
			continue
		}
		if err := fn(p, k, v); err != nil {
			errs = append(errs, asKeyError(k, err))
			continue
		}
		p.set[k] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := p.applyEnv(getenv); err != nil {
		return nil, err
	}
	if err := p.finish(resolvConf); err != nil {
		return nil, err
	}
	return p.cfg, nil
}
