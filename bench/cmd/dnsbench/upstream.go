package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// upKind is what listens on one upstream address during a scenario.
type upKind int

const (
	upNSD    upKind = iota // a real authoritative server
	upSilent               // reads every query and never answers
)

// upstreams keeps one slot per upstream IP, each either an NSD process or a
// silent socket. reconcile switches slots between the two between
// scenarios, keeping NSDs that need no change.
type upstreams struct {
	ips     []string
	port    int
	dir     string
	zone    string
	nsds    map[string]*proc
	silents map[string]*silent
}

func newUpstreams(ips []string, port int, dir, zoneFile string) *upstreams {
	return &upstreams{ips: ips, port: port, dir: dir, zone: zoneFile,
		nsds: map[string]*proc{}, silents: map[string]*silent{}}
}

func (u *upstreams) addr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(u.port)) }

// reconcile makes upstream i be kinds[i].
func (u *upstreams) reconcile(kinds []upKind) error {
	for i, ip := range u.ips {
		want := kinds[i]
		if want == upNSD {
			if s := u.silents[ip]; s != nil {
				s.close()
				delete(u.silents, ip)
			}
			if p := u.nsds[ip]; p != nil && !p.exited() {
				continue
			}
			p, err := u.startNSD(i, ip)
			if err != nil {
				return err
			}
			u.nsds[ip] = p
			continue
		}
		if p := u.nsds[ip]; p != nil {
			p.stop()
			delete(u.nsds, ip)
		}
		if u.silents[ip] == nil {
			s, err := listenSilent(u.addr(ip))
			if err != nil {
				return err
			}
			u.silents[ip] = s
		}
	}
	return nil
}

// nsd returns the NSD process of upstream ip, or nil.
func (u *upstreams) nsd(ip string) *proc { return u.nsds[ip] }

// cpu is the CPU seconds (utime+stime) the running NSDs have used so far:
// the direct row's CPU, and in saturation runs the upstreams' share.
func (u *upstreams) cpu() (float64, error) {
	var sum float64
	for _, p := range u.nsds {
		c, err := groupCPU(p.pid())
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

func (u *upstreams) close() {
	for ip, p := range u.nsds {
		p.stop()
		delete(u.nsds, ip)
	}
	for ip, s := range u.silents {
		s.close()
		delete(u.silents, ip)
	}
}

// startNSD runs one foreground NSD bound to ip only, with every file it
// writes in its own directory so that instances never share state.
func (u *upstreams) startNSD(i int, ip string) (*proc, error) {
	dir := filepath.Join(u.dir, fmt.Sprintf("nsd%d", i+1))
	conf := filepath.Join(dir, "nsd.conf")
	err := writeFile(conf, fmt.Sprintf(`server:
	ip-address: %s
	port: %d
	do-ip6: no
	server-count: 1
	reuseport: no
	username: ""
	chroot: ""
	zonesdir: "%[3]s"
	database: ""
	zonelistfile: "%[3]s/zone.list"
	xfrdfile: "%[3]s/xfrd.state"
	xfrdir: "%[3]s"
	pidfile: "%[3]s/nsd.pid"
	logfile: "%[3]s/nsd.log"
	verbosity: 0
	hide-version: yes
	tcp-count: 200
remote-control:
	control-enable: no
zone:
	name: %[4]s
	zonefile: "%[5]s"
`, ip, u.port, dir, zoneName, u.zone))
	if err != nil {
		return nil, err
	}
	p, err := startProc("nsd-"+ip, filepath.Join(dir, "stderr.log"), "nsd", "-d", "-c", conf)
	if err != nil {
		return nil, err
	}
	if err := waitDNS(u.addr(ip), zoneName, 10*time.Second, p); err != nil {
		p.stop()
		return nil, fmt.Errorf("nsd on %s: %w (see %s)", ip, err, dir)
	}
	return p, nil
}

// waitDNS polls addr until it answers a query for name, or p exits.
func waitDNS(addr, name string, limit time.Duration, p *proc) error {
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeSOA)
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("exited during startup: %v", p.err)
		}
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %v: %w", addr, limit, last)
}

// silent is an upstream that is up but never answers: it drains its UDP
// socket (so the kernel does not send ICMP port unreachable, which would
// let a forwarder fail fast) and holds TCP connections open, reading.
type silent struct {
	udp    net.PacketConn
	tcp    net.Listener
	mu     sync.Mutex
	cs     []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func listenSilent(addr string) (*silent, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("silent upstream udp %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("silent upstream tcp %s: %w", addr, err)
	}
	s := &silent{udp: pc, tcp: ln}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				continue
			}
			s.cs = append(s.cs, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return s, nil
}

func (s *silent) close() {
	s.udp.Close()
	s.tcp.Close()
	s.mu.Lock()
	s.closed = true
	for _, c := range s.cs {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
