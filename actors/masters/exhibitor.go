package masters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spartan-dns/spartan/actors/config"
)

// exhibitorURL builds the status URL from exhibitor_address: a host (port
// config.ExhibitorPort) or host:port.
func exhibitorURL(address string) string {
	address = strings.TrimSpace(address)
	if address == "" {
		return ""
	}
	hostport := address
	if _, _, err := net.SplitHostPort(address); err != nil {
		hostport = net.JoinHostPort(strings.Trim(address, "[]"), config.ExhibitorPort)
	}
	return "http://" + hostport + config.ExhibitorStatusPath
}

// newExhibitorReader returns the read function for exhibitor and
// exhibitor_uri. The HTTP client resolves the Exhibitor host through the
// injected Lookup, not the system resolver (which is Spartan), and ignores
// HTTP_PROXY: the status endpoint is inside the cluster.
func newExhibitorReader(b *base, url string, missing bool) func(ctx context.Context) ([]netip.Addr, error) {
	if missing {
		what := "exhibitor_address"
		if b.source == config.MasterSourceExhibitorURI {
			what = "exhibitor_uri"
		}
		return func(context.Context) ([]netip.Addr, error) {
			return nil, fmt.Errorf("%s is not set", what)
		}
	}
	dialer := &net.Dialer{Timeout: b.timeout, KeepAlive: 30 * time.Second}
	lookup := b.lookup
	transport := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := resolveHost(ctx, lookup, host)
			if err != nil {
				return nil, err
			}
			var errs []error
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   b.timeout,
		ResponseHeaderTimeout: b.timeout,
	}
	client := &http.Client{Transport: transport, Timeout: b.timeout}
	return func(ctx context.Context) ([]netip.Addr, error) {
		hosts, err := fetchExhibitor(ctx, client, url, b.timeout)
		if err != nil {
			// A failed read may leave a half-dead keep-alive connection.
			transport.CloseIdleConnections()
			return nil, err
		}
		ips, err := b.resolveAll(ctx, hosts)
		if err != nil {
			return nil, fmt.Errorf("exhibitor %s: %w", url, err)
		}
		return ips, nil
	}
}

func resolveHost(ctx context.Context, lookup Lookup, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	}
	if lookup == nil {
		return nil, fmt.Errorf("cannot resolve %q: no resolver", host)
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%q resolved to no addresses", host)
	}
	return ips, nil
}

func fetchExhibitor(ctx context.Context, client *http.Client, url string, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("exhibitor: bad URL %q: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return nil, fmt.Errorf("exhibitor GET %s: timed out after %s: %w", url, timeout, err)
		}
		return nil, fmt.Errorf("exhibitor GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("exhibitor GET %s: reading body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("exhibitor GET %s: HTTP status %s: %s", url, resp.Status, snippet(body))
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("exhibitor GET %s: body larger than %d bytes", url, maxBody)
	}
	hosts, err := ParseExhibitor(body)
	if err != nil {
		return nil, fmt.Errorf("exhibitor GET %s: %w", url, err)
	}
	return hosts, nil
}

// snippet is the start of a body, for error messages.
func snippet(body []byte) string {
	const n = 200
	s := strings.TrimSpace(string(body))
	if len(s) > n {
		s = s[:n] + "..."
	}
	return fmt.Sprintf("%q", s)
}
