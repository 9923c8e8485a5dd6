package config

import "fmt"

// Environment variables that override the file, as in the original.
const (
	EnvMasterSource     = "MASTER_SOURCE"
	EnvExhibitorAddress = "EXHIBITOR_ADDRESS"
	EnvExhibitorURI     = "EXHIBITOR_URI"
)

// applyEnv lets MASTER_SOURCE, EXHIBITOR_ADDRESS and EXHIBITOR_URI override
// the file. An empty variable is taken as unset.
func (p *parser) applyEnv(getenv func(string) string) error {
	envs := []struct {
		name, key string
		field     *string
		valid     func(string) error
	}{
		{EnvMasterSource, "master_source", &p.cfg.MasterSource, validMasterSource},
		{EnvExhibitorAddress, "exhibitor_address", &p.cfg.ExhibitorAddress, validExhibitorAddress},
		{EnvExhibitorURI, "exhibitor_uri", &p.cfg.ExhibitorURI, validExhibitorURI},
	}
	for _, e := range envs {
		s := getenv(e.name)
		if s == "" {
			continue
		}
		if err := e.valid(s); err != nil {
			return &KeyError{Key: e.name, Err: fmt.Errorf("from the environment: %w", err)}
		}
		*e.field = s
		p.set[e.key] = true
	}
	return nil
}
