package config

import (
	"errors"
	"fmt"
	"strings"
)

// KeyError is a configuration error attributable to one key: a top-level
// key ("udp_port"), a nested one ("interface.name",
// `forward_zones["example.com"]`) or an overriding environment variable
// ("MASTER_SOURCE"). cmd/spartan exits 2 on it.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string {
	if strings.Contains(e.Key, `"`) { // forward_zones["x"]: quoting again would only add backslashes
		return fmt.Sprintf("config key %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("config key %q: %v", e.Key, e.Err)
}
func (e *KeyError) Unwrap() error { return e.Err }

func keyErr(key, format string, args ...any) *KeyError {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

func asKeyError(key string, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return err
	}
	return &KeyError{Key: key, Err: err}
}
