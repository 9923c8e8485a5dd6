package harness

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metric returns one sample of the daemon's /metrics (Options.HTTP), named
// as exposed, with its labels if it has any (`spartan_shed_queries_total`,
// `spartan_queries_total{outcome="local",route="local"}`).
func (s *Spartan) Metric(name string) (float64, error) {
	if s.HTTPAddr == "" {
		return 0, fmt.Errorf("metric %s: the daemon was started without Options.HTTP", name)
	}
	return Scrape(s.HTTPAddr, name)
}

// Scrape reads one sample from the /metrics endpoint at addr.
func Scrape(addr, name string) (float64, error) {
	// No keep-alive: an idle scrape connection would count as a daemon fd.
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics of %s", name, addr)
}
