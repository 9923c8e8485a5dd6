package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// lossTable is the nftables table of scenario 6. It lives in the
// benchmark's own network namespace (netns.go), so it can drop nothing
// but the benchmark's datagrams, and it vanishes with the namespace even
// if the harness is killed.
const lossTable = "dnsbench_loss"

// lossRules is the nft script that drops permille/1000 of the UDP datagrams
// to and from every upstream, each way, independently at random. On
// loopback every datagram passes the input hook exactly once, so one chain
// sees both the query (to the upstream's port) and the reply (from it).
// Input, not output: a drop in the output hook fails the sender's sendto
// with EPERM, which a forwarder may take as a fast local failure; a drop
// on input is silent, as a loss in the network is. The first rule of each
// pair counts every datagram, the second counts and drops the unlucky
// ones: parseLossCounters reads both.
//
// numgen random draws a fresh number per packet; "mod 1000 < permille"
// keeps the granularity at 0.1 %.
func lossRules(ips []string, port, permille int) string {
	set := "{ " + strings.Join(ips, ", ") + " }"
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", lossTable)
	b.WriteString("\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n")
	for _, dir := range []struct{ addr, port string }{{"daddr", "dport"}, {"saddr", "sport"}} {
		match := fmt.Sprintf("ip %s %s udp %s %d", dir.addr, set, dir.port, port)
		fmt.Fprintf(&b, "\t\t%s counter\n", match)
		fmt.Fprintf(&b, "\t\t%s numgen random mod 1000 < %d counter drop\n", match, permille)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// nftApply loads an nft script (the table is replaced if present).
func nftApply(script string) error {
	nftDelete() // a table left by an interrupted measurement
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nftDelete() {
	_ = exec.Command("nft", "delete", "table", "ip", lossTable).Run()
}

// lossCount is what the loss rules saw: every datagram to or from an
// upstream, and how many of them were dropped.
type lossCount struct{ seen, dropped uint64 }

func (c lossCount) pct() float64 {
	if c.seen == 0 {
		return 0
	}
	return 100 * float64(c.dropped) / float64(c.seen)
}

func nftLossCount() (lossCount, error) {
	out, err := exec.Command("nft", "-j", "list", "table", "ip", lossTable).Output()
	if err != nil {
		return lossCount{}, fmt.Errorf("nft list table %s: %w", lossTable, err)
	}
	return parseLossCounters(out)
}

// parseLossCounters reads the counters of the rules lossRules writes from
// `nft -j list table`: a rule ending in drop counts drops, the rule before
// it every datagram of the same direction.
func parseLossCounters(js []byte) (lossCount, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return lossCount{}, fmt.Errorf("nft json: %w", err)
	}
	var c lossCount
	rules := 0
	for _, obj := range doc.Nftables {
		raw, ok := obj["rule"]
		if !ok {
			continue
		}
		var r struct {
			Expr []map[string]json.RawMessage `json:"expr"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return lossCount{}, fmt.Errorf("nft json rule: %w", err)
		}
		var packets uint64
		hasCounter, drop := false, false
		for _, e := range r.Expr {
			if cr, ok := e["counter"]; ok {
				var ctr struct{ Packets uint64 }
				if err := json.Unmarshal(cr, &ctr); err != nil {
					return lossCount{}, fmt.Errorf("nft json counter: %w", err)
				}
				packets, hasCounter = ctr.Packets, true
			}
			if _, ok := e["drop"]; ok {
				drop = true
			}
		}
		if !hasCounter {
			continue
		}
		rules++
		if drop {
			c.dropped += packets
		} else {
			c.seen += packets
		}
	}
	if rules != 4 {
		return lossCount{}, fmt.Errorf("nft table %s: %d counted rules, want 4", lossTable, rules)
	}
	return c, nil
}

// nftAvailable says why scenario 6 cannot run, or nil.
func nftAvailable() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("nft not on PATH (Debian package nftables)")
	}
	var out bytes.Buffer
	cmd := exec.Command("nft", "list", "tables")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft list tables: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
