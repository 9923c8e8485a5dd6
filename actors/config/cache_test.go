package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCacheDefaults(t *testing.T) {
	c, err := Parse([]byte(`{}`), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := CacheConfig{Enabled: true, MaxEntries: 10000, MaxTTL: time.Hour, NegativeMaxTTL: 30 * time.Minute,
		ServeStale: true, StaleMaxAge: 24 * time.Hour, StaleAnswerTTL: 30 * time.Second,
		ClientTimeout: 1800 * time.Millisecond, StaleRecheck: 30 * time.Second, Prefetch: true}
	if !reflect.DeepEqual(c.Cache, want) {
		t.Errorf("cache = %+v, want %+v", c.Cache, want)
	}
	c, err = Parse([]byte(`{"cache": {"enabled": false}}`), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want.Enabled = false
	if !reflect.DeepEqual(c.Cache, want) {
		t.Errorf("cache = %+v, want %+v (only enabled changed)", c.Cache, want)
	}
}

// Every bad cache value is an error naming the dotted key (cmd/spartan
// exits 2 on a KeyError).
func TestCacheKeyErrors(t *testing.T) {
	tests := []struct {
		doc, key, sub string
	}{
		{`{"cache": true}`, "cache", "expected an object"},
		{`{"cache": {"size": 10}}`, "cache.size", "unknown"},
		{`{"cache": {"enabled": "yes"}}`, "cache.enabled", "true or false"},
		{`{"cache": {"max_entries": 0}}`, "cache.max_entries", "out of range"},
		{`{"cache": {"max_entries": 100000000}}`, "cache.max_entries", "out of range"},
		{`{"cache": {"max_ttl": "1.5s"}}`, "cache.max_ttl", "whole number of seconds"},
		{`{"cache": {"max_ttl": 3600}}`, "cache.max_ttl", "duration string"},
		{`{"cache": {"max_ttl": "1000000h"}}`, "cache.max_ttl", "largest DNS TTL"},
		{`{"cache": {"negative_max_ttl": "-1s"}}`, "cache.negative_max_ttl", "greater than zero"},
		{`{"cache": {"stale_max_age": "forever"}}`, "cache.stale_max_age", "invalid duration"},
		{`{"cache": {"stale_answer_ttl": "500ms"}}`, "cache.stale_answer_ttl", "whole number of seconds"},
		{`{"cache": {"client_timeout": "0s"}}`, "cache.client_timeout", "greater than zero"},
		{`{"cache": {"stale_recheck": null}}`, "cache.stale_recheck", "duration string"},
		{`{"cache": {"prefetch": 1}}`, "cache.prefetch", "true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.key+" "+tt.doc, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), nil, "")
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tt.key {
				t.Fatalf("err = %v, want a KeyError for %q", err, tt.key)
			}
			if !strings.Contains(err.Error(), tt.sub) {
				t.Errorf("err %q does not say %q", err, tt.sub)
			}
		})
	}
}
