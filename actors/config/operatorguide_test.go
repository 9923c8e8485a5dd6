package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spartan-dns/spartan/actors/config"
)

var guidePath = filepath.Join("..", "..", "docs", "OPERATOR.md")

// guideRow is one row of the operator guide's key table.
type guideRow struct {
	key     string // "udp_port", "interface.manage"
	def     string // the default as JSON, "" when the cell is prose (an environment or host default)
	defCell string
}

// guideKeys reads the key table between the "keys" markers.
func guideKeys(t *testing.T) []guideRow {
	t.Helper()
	data, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	begin, end := strings.Index(s, "<!-- keys: begin -->"), strings.Index(s, "<!-- keys: end -->")
	if begin < 0 || end < begin {
		t.Fatalf("%s: no key table markers", guidePath)
	}
	code := regexp.MustCompile("^`([^`]*)`$")
	var rows []guideRow
	for _, line := range strings.Split(s[begin:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		r := guideRow{key: key, defCell: strings.TrimSpace(cells[3])}
		if m := code.FindStringSubmatch(r.defCell); m != nil {
			r.def = m[1]
		}
		rows = append(rows, r)
	}
	return rows
}

// knownKeys asks the parser for the keys it knows at one level, from its
// own error for an unknown key: the table the code parses with.
func knownKeys(t *testing.T, object string) []string {
	t.Helper()
	doc := `{"no_such_key_for_the_guide": 1}`
	if object != "" {
		doc = `{"` + object + `": {"no_such_key_for_the_guide": 1}}`
	}
	_, err := config.Parse([]byte(doc), nil, "")
	var ke *config.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("%s: want a KeyError, got %v", doc, err)
	}
	m := regexp.MustCompile(`known keys: ([^)]*)\)`).FindStringSubmatch(ke.Err.Error())
	if m == nil {
		t.Fatalf("%s: the error lists no known keys: %v", doc, err)
	}
	return strings.Split(m[1], ", ")
}

// TestOperatorGuideKeys: the guide documents exactly the keys the loader
// accepts, top-level and nested, and every default it states in code
// font is the loader's default (setting the key to it changes nothing).
func TestOperatorGuideKeys(t *testing.T) {
	rows := guideKeys(t)
	var documented []string
	for _, r := range rows {
		documented = append(documented, r.key)
	}
	var code []string
	for _, k := range knownKeys(t, "") {
		if !slices.ContainsFunc(documented, func(d string) bool { return strings.HasPrefix(d, k+".") }) {
			code = append(code, k)
			continue
		}
		for _, sub := range knownKeys(t, k) {
			code = append(code, k+"."+sub)
		}
	}
	slices.Sort(code)
	slices.Sort(documented)
	if !slices.Equal(code, documented) {
		t.Fatalf("docs/OPERATOR.md documents keys\n  %v\nthe loader accepts\n  %v", documented, code)
	}

	base, err := config.Parse([]byte(`{}`), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.def == "" {
			if !strings.Contains(r.defCell, "none") && !strings.Contains(r.defCell, "resolv.conf") {
				t.Errorf("%s: default %q is neither a JSON value in code font nor a stated absence", r.key, r.defCell)
			}
			continue
		}
		doc := `{"` + r.key + `": ` + r.def + `}`
		if obj, sub, ok := strings.Cut(r.key, "."); ok {
			doc = `{"` + obj + `": {"` + sub + `": ` + r.def + `}}`
		}
		got, err := config.Parse([]byte(doc), nil, "")
		if err != nil {
			t.Errorf("%s: the documented default does not parse: %v", r.key, err)
			continue
		}
		if !reflect.DeepEqual(got, base) {
			t.Errorf("%s: documented default %s is not the loader's default", r.key, r.def)
		}
	}
}
