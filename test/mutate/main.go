// Command mutate writes docs/MUTATION.md from gremlins' JSON results (one
// file per scope, see test/mutate.sh): the score, how it was run, and every
// surviving mutant with the reason it is left, from a hand-kept file.
//
// Each argument is name=package=excluded-files=run-filter=coefficient=results.json.
// The survivors file has one line per known survivor:
//
//	file.go:LINE:COL MUTATOR	why it is equivalent or left
//
// A survivor without a line there is listed as "unexplained", which is the
// reviewer's cue to add a test or a reason.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// result is the part of gremlins' output format read here.
type result struct {
	Files []struct {
		Filename  string `json:"file_name"`
		Mutations []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		} `json:"mutations"`
	} `json:"files"`
	Killed     int     `json:"mutants_killed"`
	Lived      int     `json:"mutants_lived"`
	NotViable  int     `json:"mutants_not_viable"`
	NotCovered int     `json:"mutants_not_covered"`
	Elapsed    float64 `json:"elapsed_time"`
}

type scope struct {
	name, pkg, exclude, run, coeff string
	res                            result
	timedOut                       int
	survivors, uncovered           []string // "file.go:L:C MUTATOR"
}

func main() {
	out := flag.String("o", "docs/MUTATION.md", "report to write")
	survivorsPath := flag.String("survivors", "test/mutate/survivors.txt", "known survivors and their reasons")
	elapsed := flag.String("elapsed", "", "wall time of the whole run")
	workers := flag.Int("workers", 2, "gremlins --workers used")
	flag.Parse()
	reasons, err := readReasons(*survivorsPath)
	if err != nil {
		fail(err)
	}
	var scopes []*scope
	for _, a := range flag.Args() {
		s, err := readScope(a)
		if err != nil {
			fail(err)
		}
		scopes = append(scopes, s)
	}
	if err := os.WriteFile(*out, []byte(render(scopes, reasons, *elapsed, *workers)), 0o644); err != nil {
		fail(fmt.Errorf("write report: %w", err))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	os.Exit(1)
}

func readReasons(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("survivors file: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, why, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, fmt.Errorf("survivors file: no tab in %q", line)
		}
		m[strings.TrimSpace(key)] = strings.TrimSpace(why)
	}
	return m, sc.Err()
}

func readScope(arg string) (*scope, error) {
	p := strings.SplitN(arg, "=", 6)
	if len(p) != 6 {
		return nil, fmt.Errorf("argument %q: want name=package=exclude=run=coefficient=results.json", arg)
	}
	s := &scope{name: p[0], pkg: p[1], exclude: p[2], run: p[3], coeff: p[4]}
	b, err := os.ReadFile(p[5])
	if err != nil {
		return nil, fmt.Errorf("results of %s: %w", s.name, err)
	}
	if err := json.Unmarshal(b, &s.res); err != nil {
		return nil, fmt.Errorf("results of %s: %w", s.name, err)
	}
	for _, f := range s.res.Files {
		for _, m := range f.Mutations {
			key := fmt.Sprintf("%s:%d:%d %s", filepath.Base(f.Filename), m.Line, m.Column, m.Type)
			switch m.Status {
			case "LIVED":
				s.survivors = append(s.survivors, key)
			case "TIMED OUT":
				s.timedOut++
			case "NOT COVERED":
				s.uncovered = append(s.uncovered, key)
			}
		}
	}
	sort.Strings(s.survivors)
	sort.Strings(s.uncovered)
	return s, nil
}

func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(a)/float64(b))
}

func render(scopes []*scope, reasons map[string]string, elapsed string, workers int) string {
	var b strings.Builder
	b.WriteString("# Mutation score\n\n")
	b.WriteString("Written by `make mutate` (`test/mutate.sh`, then `go run ./test/mutate`); do not edit by hand:\n")
	b.WriteString("the reasons for survivors live in `test/mutate/survivors.txt`.\n\n")
	b.WriteString("Mutation testing (gremlins, pinned as a tool in `go.mod`) changes the decision code one\n")
	b.WriteString("operator at a time (`<` to `<=`, `==` to `!=`, `+` to `-`, a negation, `++` to `--`) and\n")
	b.WriteString("runs the unit tests that guard it. A mutant is *killed* when a test fails, *timed out* when\n")
	b.WriteString("the tests hang (the mutant is caught too: counted as killed below), *lived* when every test\n")
	b.WriteString("passes. Mutants on lines no selected test runs are *not covered* and not tried.\n\n")
	fmt.Fprintf(&b, "Run: `make mutate` = for each scope, `GOFLAGS=-run=TESTS go tool gremlins unleash --workers %d --timeout-coefficient COEFF -E NOT-MUTATED -o RESULTS.json PACKAGE`; whole run %s.\n\n", workers, elapsed)
	b.WriteString("| scope | package | not mutated | tests | coeff | killed | timed out | lived | not covered | score (killed + timed out) / (those + lived) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var k, to, l int
	for _, s := range scopes {
		cell := func(x string) string { return strings.ReplaceAll(x, "|", `\|`) } // a regexp's | would end the cell
		fmt.Fprintf(&b, "| %s | `%s` | `%s` | `%s` | %s | %d | %d | %d | %d | %s |\n", s.name, s.pkg, cell(s.exclude), cell(s.run), s.coeff,
			s.res.Killed, s.timedOut, s.res.Lived, s.res.NotCovered, pct(s.res.Killed+s.timedOut, s.res.Killed+s.timedOut+s.res.Lived))
		k, to, l = k+s.res.Killed, to+s.timedOut, l+s.res.Lived
	}
	fmt.Fprintf(&b, "| **all** | | | | | **%d** | **%d** | **%d** | | **%s** |\n\n", k, to, l, pct(k+to, k+to+l))
	fmt.Fprintf(&b, "Counting timed-out mutants as neither killed nor lived, the score is %s (%d killed of %d).\n\n", pct(k, k+l), k, k+l)
	b.WriteString("## Surviving mutants\n\n")
	unexplained := 0
	for _, s := range scopes {
		if len(s.survivors) == 0 {
			continue
		}
		fmt.Fprintf(&b, "### %s (`%s`)\n\n| mutant | why it is left |\n|---|---|\n", s.name, s.pkg)
		for _, key := range s.survivors {
			why, ok := reasons[key]
			if !ok {
				why = "**unexplained**: add a test or a reason in test/mutate/survivors.txt"
				unexplained++
			}
			fmt.Fprintf(&b, "| `%s` | %s |\n", key, why)
		}
		b.WriteString("\n")
	}
	if unexplained > 0 {
		fmt.Fprintf(&b, "%d survivors are unexplained.\n\n", unexplained)
	}
	b.WriteString("## Not covered by the selected tests\n\n")
	for _, s := range scopes {
		if len(s.uncovered) > 0 {
			fmt.Fprintf(&b, "- %s: %s\n", s.name, "`"+strings.Join(s.uncovered, "`, `")+"`")
		}
	}
	return b.String()
}
