package forwarder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/state"
)

// Fuzz targets for everything in the query path that reads bytes a client
// or an upstream chose. Seeds live in testdata/fuzz/<target>/; `go test`
// runs them, `test/fuzz.sh` explores.

// Upstream ports of the fake network the FuzzHandle forwarder dials. No
// socket is ever opened: fzDialer answers in-process, so fuzzing sends no
// packet anywhere.
const (
	fzEchoPort     = 5301 // answers NOERROR, echoing the query
	fzServFailPort = 5302 // answers SERVFAIL, echoing the query
)

// fzDialer is the forwarder's network during FuzzHandle: the two echo ports
// answer, every other address fails to dial at once (as an unreachable
// upstream does).
type fzDialer struct{}

var errFzUnreachable = errors.New("fuzz: upstream unreachable")

func (fzDialer) Dial(network string, addr netip.AddrPort, _ time.Time) (Conn, error) {
	switch addr.Port() {
	case fzEchoPort:
		return &fzConn{tcp: network == "tcp", rcode: rcodeNoError}, nil
	case fzServFailPort:
		return &fzConn{tcp: network == "tcp", rcode: rcodeServFail}, nil
	}
	return nil, errFzUnreachable
}

// fzConn is an upstream that answers every query with fzEcho of it, in the
// framing of its transport. Once nothing is left to read, reads time out at
// once, which is what a silent upstream does at its deadline.
type fzConn struct {
	tcp   bool
	rcode int

	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (c *fzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, os.ErrClosed
	}
	q := p
	if c.tcp {
		if len(p) < 2 || int(binary.BigEndian.Uint16(p)) != len(p)-2 {
			return 0, errors.New("fuzz upstream: forwarder wrote a bad TCP frame")
		}
		q = p[2:]
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(q)))
		c.out.Write(l[:])
	}
	c.out.Write(fzEcho(q, c.rcode))
	return len(p), nil
}

func (c *fzConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, os.ErrClosed
	}
	if c.out.Len() == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	if c.tcp {
		return c.out.Read(p)
	}
	// A datagram is read whole or not at all.
	n := copy(p, c.out.Bytes())
	c.out.Reset()
	return n, nil
}

func (c *fzConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *fzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fzConn) SetWriteDeadline(time.Time) error { return nil }

// fzEcho is the fake upstreams' answer to q: q itself with QR and RA set and
// the given rcode. Whether the forwarder accepts it depends only on whether
// q's own sections are well formed, which the fuzzer controls.
func fzEcho(q []byte, rc int) []byte {
	r := bytes.Clone(q)
	if len(r) >= headerLen {
		r[2] |= flagQR
		r[3] = 0x80 | byte(rc)
	}
	return r
}

// fzForwarders returns a forwarder on the fake network, with a default
// route whose first upstream answers, a zone whose upstream answers
// SERVFAIL, a zone whose upstreams are all unreachable, and known masters
// (unreachable too) for the zk. and mesos. routes; and a forwarder with no
// upstream at all, the configuration the spec gives when resolv.conf lists
// nothing.
func fzForwarders() (wired, bare *Forwarder) {
	ap := func(port uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	}
	cfg := config.Default()
	cfg.UpstreamTimeout = 2 * time.Second
	cfg.UpstreamResolvers = []netip.AddrPort{ap(fzEchoPort), ap(5399)}
	cfg.ForwardZones = map[string][]netip.AddrPort{
		"servfail.example.": {ap(fzServFailPort)},
		"down.example.":     {ap(5397), ap(5398), ap(5399)},
	}
	masters := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}
	store := &state.Store{}
	store.Publish(state.Build(cfg, masters, state.NewRegistry()))
	wired = New(store, zerolog.Nop())
	wired.Dial = fzDialer{}
	wired.LoserGrace = 10 * time.Millisecond

	bare = New(state.NewStore(config.Default(), state.NewRegistry()), zerolog.Nop())
	bare.Dial = fzDialer{} // has nothing to dial; this makes sure of it
	return wired, bare
}

func FuzzHandle(f *testing.F) {
	wired, bare := fzForwarders()
	f.Fuzz(func(t *testing.T, q []byte) {
		if len(q) > 65535 {
			return // no listener passes a longer message (UDP 4096, TCP frames 65535)
		}
		orig := bytes.Clone(q)
		for _, fw := range []*Forwarder{wired, bare} {
			for _, tcp := range []bool{false, true} {
				reply := fw.Handle(q, tcp)
				if !bytes.Equal(q, orig) {
					t.Fatalf("tcp=%v: Handle modified the query", tcp)
				}
				fzCheckHandle(t, fw, fw == wired, tcp, q, reply)
			}
		}
	})
}

// fzCheckHandle checks one reply of Handle against what the spec and the
// fake network say it must be.
func fzCheckHandle(t *testing.T, fw *Forwarder, wired, tcp bool, q, reply []byte) {
	t.Helper()
	if len(q) < headerLen || isResponse(q) {
		if reply != nil {
			t.Fatalf("tcp=%v: answered a packet that must be dropped: %x", tcp, reply)
		}
		return
	}
	if reply == nil {
		t.Fatalf("tcp=%v: no reply to a query", tcp)
	}
	if len(reply) < headerLen || !isResponse(reply) {
		t.Fatalf("tcp=%v: reply without QR: %x", tcp, reply)
	}
	if msgID(reply) != msgID(q) {
		t.Fatalf("tcp=%v: reply ID %d, query ID %d", tcp, msgID(reply), msgID(q))
	}
	if opcode(reply) != opcode(q) {
		t.Fatalf("tcp=%v: reply opcode %d, query opcode %d", tcp, opcode(reply), opcode(q))
	}

	if opcode(q) != 0 {
		fzWantError(t, q, 0, rcodeNotImp, reply)
		return
	}
	qEnd, _, name, err := question(q)
	if qdcount(q) != 1 || err != nil {
		fzWantError(t, q, 0, rcodeFormErr, reply)
		return
	}
	if qEnd-4-headerLen > 255 {
		t.Fatalf("question() accepted a %d-octet name (RFC 1035 allows 255)", qEnd-4-headerLen)
	}
	if localZone(name) != "" {
		var m dns.Msg
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("tcp=%v: local reply does not parse: %v\nreply %x", tcp, err, reply)
		}
		if m.Id != msgID(q) || !m.Response {
			t.Fatalf("tcp=%v: miekg reads another header: %v", tcp, &m)
		}
		if !m.Authoritative && m.Rcode != dns.RcodeFormatError && m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("local zone %q: answer not authoritative: %v", name, &m)
		}
		if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, fzMiekgName(t, q)) {
			t.Fatalf("local zone %q: question not echoed: %v", name, m.Question)
		}
		return
	}
	servfail := func() { fzWantError(t, q, qEnd, rcodeServFail, reply) }
	if !wired {
		servfail() // no upstreams anywhere
		return
	}
	if !tcp && (len(q) > fzUDPSize(q) || len(q) > 4096) {
		// The echo is larger than the client's UDP size: no compliant
		// upstream sends that (it sets TC), and the forwarder may size its
		// read buffer by the client's. (The UDP listener passes no query
		// over 4096 bytes.) The header was checked above.
		return
	}
	question := q[headerLen:qEnd]
	echoOK := func(rc int) bool {
		// The fake upstream saw q with a fresh ID; the forwarder validated its
		// echo against that ID, so validate with q's own.
		return validateReply(fzEcho(q, rc), msgID(q), question) == nil
	}
	switch kind, _ := RouteFor(fw.store.Load(), name); kind {
	case RouteDefault:
		// Transparency: a reply the upstream got right reaches the client
		// byte for byte, with only the ID put back.
		if echoOK(rcodeNoError) {
			if want := fzEcho(q, rcodeNoError); !bytes.Equal(reply, want) {
				t.Fatalf("upstream reply altered:\n got %x\nwant %x", reply, want)
			}
			return
		}
		servfail()
	case RouteZone:
		if state.InZone(name, "servfail.example.") && echoOK(rcodeServFail) {
			// The upstream's own SERVFAIL is preferred to a made-up one.
			if want := fzEcho(q, rcodeServFail); !bytes.Equal(reply, want) {
				t.Fatalf("upstream SERVFAIL altered:\n got %x\nwant %x", reply, want)
			}
			return
		}
		servfail()
	default: // mesos: the masters are unreachable
		servfail()
	}
}

// fzUDPSize is the UDP payload size the query advertises: its EDNS size
// when miekg reads an OPT record, 512 otherwise (RFC 1035, RFC 6891).
func fzUDPSize(q []byte) int {
	var m dns.Msg
	if m.Unpack(q) != nil {
		return 512
	}
	if opt := m.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), 512)
	}
	return 512
}

// fzWantError checks that reply is exactly the made-up error reply: the
// query's header with QR, RA and rcode (NOTIMP: QR and rcode only), and its
// question when it parsed.
func fzWantError(t *testing.T, q []byte, qEnd, rc int, reply []byte) {
	t.Helper()
	n := headerLen
	if qEnd > 0 {
		n = qEnd
	}
	want := make([]byte, n)
	copy(want, q)
	want[2] = flagQR | q[2]&(opcodeMask|0x01)
	want[3] = 0x80 | byte(rc)
	if rc == rcodeNotImp {
		// Not a QUERY: no RD or RA either (SPEC, "Bad input"; as BIND).
		want[2] &^= 0x01
		want[3] &^= 0x80
	}
	clear(want[4:headerLen])
	if qEnd > 0 {
		want[5] = 1
	}
	if !bytes.Equal(reply, want) {
		t.Fatalf("want rcode %d error reply\n got %x\nwant %x", rc, reply, want)
	}
	// A reply Spartan makes up must be readable by any client.
	var m dns.Msg
	if err := m.Unpack(reply); err != nil {
		t.Fatalf("error reply does not parse: %v\nreply %x", err, reply)
	}
	if m.Rcode != rc || !m.Response || m.Id != msgID(q) {
		t.Fatalf("miekg reads another error reply: %v", &m)
	}
}

// fzMiekgName is the question name as miekg/dns spells it (escaped), for
// comparing with what miekg parsed out of a reply.
func fzMiekgName(t *testing.T, q []byte) string {
	t.Helper()
	var m dns.Msg
	if err := m.Unpack(q); err != nil || len(m.Question) == 0 {
		// answerLocal could not parse it either and said FORMERR with our
		// own copy of the question: compare with that instead.
		name, _, err := dns.UnpackDomainName(q, headerLen)
		if err != nil {
			t.Fatalf("question parsed by Handle but not by miekg: %v", err)
		}
		return name
	}
	return m.Question[0].Name
}

// FuzzValidateReply feeds arbitrary upstream packets to validateReply for a
// fixed query. An accepted packet must be a reply to that query by every
// reading of it, and validation never touches the packet.
func FuzzValidateReply(f *testing.F) {
	q, qb, qEnd := fzQuery(f, 0x4242)
	question := qb[headerLen:qEnd]
	f.Fuzz(func(t *testing.T, reply []byte) {
		orig := bytes.Clone(reply)
		err := validateReply(reply, q.Id, question)
		if !bytes.Equal(reply, orig) {
			t.Fatal("validateReply modified the reply")
		}
		if err != nil {
			return
		}
		if len(reply) < headerLen || !isResponse(reply) || msgID(reply) != q.Id || qdcount(reply) != 1 {
			t.Fatalf("accepted a packet whose header is not a reply to the query: %x", reply)
		}
		if !equalFold(reply[headerLen:qEnd], question) {
			t.Fatalf("accepted another question: %x", reply)
		}
		var m dns.Msg
		if err := m.Unpack(reply); err != nil {
			// Records whose RDATA miekg refuses still fit the packet, which is
			// all a pass-through forwarder checks.
			return
		}
		if !m.Response || m.Id != q.Id || len(m.Question) != 1 {
			t.Fatalf("miekg reads another header: %v", &m)
		}
		got, want := m.Question[0], q.Question[0]
		if !strings.EqualFold(got.Name, want.Name) || got.Qtype != want.Qtype || got.Qclass != want.Qclass {
			t.Fatalf("miekg reads question %v, want %v", got, want)
		}
	})
}

// FuzzQuestion feeds arbitrary packets to question. A name it returns is
// the wire name lower-cased, with a trailing dot, and agrees with miekg.
func FuzzQuestion(f *testing.F) {
	f.Fuzz(func(t *testing.T, m []byte) {
		orig := bytes.Clone(m)
		end, qtype, name, err := question(m)
		if !bytes.Equal(m, orig) {
			t.Fatal("question modified the packet")
		}
		if err != nil {
			if end != 0 || qtype != 0 || name != "" {
				t.Fatalf("error %v with a result (%d, %d, %q)", err, end, qtype, name)
			}
			return
		}
		if end < headerLen+5 || end > len(m) {
			t.Fatalf("end %d out of range for a %d-byte packet", end, len(m))
		}
		if n := end - 4 - headerLen; n > 255 {
			t.Fatalf("accepted a %d-octet name (RFC 1035 allows 255)", n)
		}
		if qtype != binary.BigEndian.Uint16(m[end-4:]) {
			t.Fatalf("qtype %d, packet says %d", qtype, binary.BigEndian.Uint16(m[end-4:]))
		}
		if !strings.HasSuffix(name, ".") {
			t.Fatalf("name %q has no trailing dot", name)
		}
		if strings.ContainsFunc(name, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
			t.Fatalf("name %q is not lower case", name)
		}
		// The name is the wire labels, lower-cased, joined with dots, with
		// dots and backslashes inside labels escaped.
		wire := fzLower(m[headerLen : end-4])
		if want := fzLabels(t, wire); name != want {
			t.Fatalf("name %q, wire labels say %q", name, want)
		}

		var mm dns.Msg
		if mm.Unpack(m) != nil || len(mm.Question) == 0 {
			return // miekg is stricter (e.g. about the rest of the packet)
		}
		// miekg escapes special bytes in its text form: compare wire forms.
		buf := make([]byte, 256)
		n, err := dns.PackDomainName(mm.Question[0].Name, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("miekg cannot pack its own name %q: %v", mm.Question[0].Name, err)
		}
		if !bytes.Equal(fzLower(buf[:n]), wire) {
			t.Fatalf("miekg reads name %q, question() %q", mm.Question[0].Name, name)
		}
		if mm.Question[0].Qtype != qtype {
			t.Fatalf("miekg reads qtype %d, question() %d", mm.Question[0].Qtype, qtype)
		}
	})
}

// fzLabels renders an uncompressed wire name the way question() promises:
// raw label bytes joined by dots, "." for the root.
func fzLabels(t *testing.T, wire []byte) string {
	t.Helper()
	var b strings.Builder
	for off := 0; ; {
		if off >= len(wire) {
			t.Fatalf("wire name %x has no root label", wire)
		}
		l := int(wire[off])
		if l == 0 {
			if off != len(wire)-1 {
				t.Fatalf("bytes after the root label in %x", wire)
			}
			break
		}
		if l > 63 || off+1+l > len(wire) {
			t.Fatalf("accepted a bad label at %d in %x", off, wire)
		}
		for _, c := range wire[off+1 : off+1+l] {
			if c == '.' || c == '\\' { // escaped, as in presentation format
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('.')
		off += 1 + l
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// fzLower lower-cases ASCII only, as DNS does (bytes.ToLower would mangle
// the bytes of a label that are not UTF-8).
func fzLower(b []byte) []byte {
	out := bytes.Clone(b)
	for i, c := range out {
		if 'A' <= c && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return out
}

// fzReplyConn is an upstream whose answer is the fuzzer's bytes: one
// datagram, or the raw TCP stream (framing included), whatever the query.
type fzReplyConn struct {
	fzConn
	reply []byte
}

func (c *fzReplyConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out.Len() == 0 {
		c.out.Write(c.reply)
	}
	return len(p), nil
}

type fzReplyDialer struct{ reply []byte }

func (d fzReplyDialer) Dial(network string, _ netip.AddrPort, _ time.Time) (Conn, error) {
	return &fzReplyConn{fzConn: fzConn{tcp: network == "tcp"}, reply: d.reply}, nil
}

// FuzzUpstreamReply answers a fixed query with arbitrary upstream bytes
// (a UDP datagram, or a TCP stream with its framing) through the whole race.
// Nothing an upstream sends may crash the forwarder; the client gets the
// upstream's reply byte for byte (its own ID restored) exactly when it is a
// valid reply to the query, and a made-up SERVFAIL otherwise. Its seeds are
// replies to the FuzzValidateReply query, whose upstream ID is fzUpstreamID.
func FuzzUpstreamReply(f *testing.F) {
	const fzUpstreamID, clientID = 0x4242, 0x1111
	_, qb, qEnd := fzQuery(f, clientID)
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	store := state.NewStore(cfg, state.NewRegistry())

	f.Fuzz(func(t *testing.T, reply []byte, tcp bool) {
		fw := New(store, zerolog.Nop())
		fw.Dial = fzReplyDialer{reply: reply}
		fw.Rand = func(n int) int { return fzUpstreamID % n } // the upstream query's ID
		fw.LoserGrace = 10 * time.Millisecond
		orig := bytes.Clone(reply)
		got := fw.Handle(qb, tcp)
		if !bytes.Equal(reply, orig) {
			t.Fatal("Handle modified the upstream's bytes")
		}
		if len(got) < headerLen || !isResponse(got) || msgID(got) != clientID {
			t.Fatalf("tcp=%v: reply without QR or the client's ID: %x", tcp, got)
		}
		msg := reply // what the forwarder reads as one message
		if tcp {
			if len(reply) < 2 {
				msg = nil
			} else if n := int(binary.BigEndian.Uint16(reply)); n < headerLen || n > cfg.Limits.TCPMessageMax || len(reply) < 2+n {
				msg = nil
			} else {
				msg = reply[2 : 2+n]
			}
		} else if len(reply) > 1232 {
			return // larger than the client's EDNS size: no compliant upstream sends it
		}
		if msg != nil && validateReply(msg, fzUpstreamID, qb[headerLen:qEnd]) == nil {
			want := bytes.Clone(msg)
			setID(want, clientID)
			if !bytes.Equal(got, want) {
				t.Fatalf("tcp=%v: upstream reply altered:\n got %x\nwant %x", tcp, got, want)
			}
			return
		}
		fzWantError(t, qb, qEnd, rcodeServFail, got)
	})
}

// fzQuery is the fixed query the reply-side targets answer: mixed case,
// EDNS with DO, the given ID. It returns the message, its wire form and the
// end of its question.
func fzQuery(f *testing.F, id uint16) (*dns.Msg, []byte, int) {
	f.Helper()
	q := new(dns.Msg)
	q.SetQuestion("www.Example.COM.", dns.TypeAAAA)
	q.Id = id
	q.SetEdns0(1232, true)
	qb, err := q.Pack()
	if err != nil {
		f.Fatal(err)
	}
	qEnd, _, _, err := question(qb)
	if err != nil {
		f.Fatal(err)
	}
	return q, qb, qEnd
}
