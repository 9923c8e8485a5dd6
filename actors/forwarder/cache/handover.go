package cache

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
)

// Dump and Load carry the cache over to the next process at a reload or an
// upgrade (cmd/spartan/upgrade.go). Why: the cache is what keeps a node
// resolving while its masters or upstreams are down, and that is just when
// an operator reloads a config or rolls out a fix; a new process that
// started empty would answer SERVFAIL for every name the old one could
// still serve stale.
//
// The stream: a header (magic, key format, the caller's routing tag), then
// one record per entry that can still be served, fresh or stale, until EOF.
// A record holds the key and the reply as cached, the entry's age and
// lifetime, the question name's end and the route kind; everything else
// is derived again from the reply by the loading process, under its own
// config (max_ttl, negative_max_ttl). Ages, not clock readings, cross the
// process boundary: the two processes' monotonic clocks have no common
// origin.

// dumpMagic starts a dump; keyFormat is the layout of the keys ParseQuery
// builds. Bump it with any change to that layout: a process of another
// format would never look the old keys up, so it loads nothing.
const (
	dumpMagic = "spartan-cache\n"
	keyFormat = 1
)

// ErrOtherRouting is Load's error for a dump whose routing tag is not the
// loading process's: its answers came from upstreams that may no longer
// serve those names.
var ErrOtherRouting = errors.New("the dump's routing differs from ours")

// Dump writes every entry that may still be served at now to w, after a
// header carrying tag (the caller's digest of its routing config). It
// returns the entries written.
func (c *Cache) Dump(w io.Writer, now int64, tag string) (int, error) {
	bw := bufio.NewWriter(w)
	bw.WriteString(dumpMagic)
	bw.WriteByte(keyFormat)
	writeBlob(bw, []byte(tag))
	n := 0
	var rec [19]byte
	for i := range c.shards {
		for _, e := range c.snapshot(i) {
			if now >= e.expires && !c.StaleOK(e, now) {
				continue
			}
			writeBlob(bw, []byte(e.key))
			writeBlob(bw, e.msg)
			binary.BigEndian.PutUint64(rec[0:], uint64(now-e.stored))
			binary.BigEndian.PutUint64(rec[8:], uint64(e.life))
			binary.BigEndian.PutUint16(rec[16:], uint16(e.nameEnd))
			rec[18] = e.kind
			if _, err := bw.Write(rec[:]); err != nil {
				return n, fmt.Errorf("cache dump: %w", err)
			}
			n++
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("cache dump: %w", err)
	}
	return n, nil
}

// snapshot returns the entries of shard i at this moment.
func (c *Cache) snapshot(i int) []*Entry {
	sh := &c.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return append([]*Entry(nil), sh.ring...)
}

// Load reads a dump written by Dump into the cache, until EOF. kinds bounds
// the route kinds an entry may carry (the caller indexes counters by them).
// Entries of another kind, whose reply no longer parses, that may not be cached under this cache's
// rules, or that can no longer be served at now, are skipped; an entry's
// lifetime is its original one, capped by this cache's rules. It returns
// the entries loaded; what was loaded before an error stays.
func (c *Cache) Load(r io.Reader, now int64, tag string, kinds int) (int, error) {
	br := bufio.NewReader(r)
	head := make([]byte, len(dumpMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return 0, fmt.Errorf("cache load: header: %w", err)
	}
	if string(head[:len(dumpMagic)]) != dumpMagic {
		return 0, errors.New("cache load: not a cache dump")
	}
	if head[len(dumpMagic)] != keyFormat {
		return 0, fmt.Errorf("cache load: key format %d, ours is %d", head[len(dumpMagic)], keyFormat)
	}
	theirs, err := readBlob(br, 1024)
	if err != nil {
		return 0, fmt.Errorf("cache load: header: %w", err)
	}
	if string(theirs) != tag {
		return 0, ErrOtherRouting
	}
	n := 0
	var rec [19]byte
	for {
		key, err := readBlob(br, MaxKey)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("cache load: entry %d: %w", n, err)
		}
		msg, err := readBlob(br, 65535)
		if err == nil {
			_, err = io.ReadFull(br, rec[:])
		}
		if err != nil {
			return n, fmt.Errorf("cache load: entry %d: %w", n, noEOF(err))
		}
		age, life := int64(binary.BigEndian.Uint64(rec[0:])), int64(binary.BigEndian.Uint64(rec[8:]))
		nameEnd := int(binary.BigEndian.Uint16(rec[16:]))
		if int(rec[18]) >= kinds {
			continue
		}
		if e := c.revive(key, msg, nameEnd, rec[18], age, life, now); e != nil {
			c.insert(e, maphash.Bytes(c.seed, key), now)
			n++
		}
	}
}

// revive rebuilds one dumped entry, or returns nil when it must not be
// loaded.
func (c *Cache) revive(key, msg []byte, nameEnd int, kind uint8, age, life, now int64) *Entry {
	if len(key) == 0 || age < 0 || life <= 0 || nameEnd <= headerLen || nameEnd > len(msg) {
		return nil
	}
	p, ok := c.rules.walk(msg, nameEnd)
	if !ok || p.cookieLen > 0 { // a cached reply has its COOKIE taken out
		return nil
	}
	life = min(life, int64(p.life)*1e9)
	if life == 0 {
		return nil
	}
	e := &Entry{
		key: string(key), msg: msg, ttls: p.ttls, nameEnd: nameEnd,
		optLen: p.optLen, optEnd: p.optEnd,
		stored: now - age, life: life, kind: kind,
	}
	e.expires = e.stored + life
	if now >= e.expires && !c.StaleOK(e, now) {
		return nil
	}
	return e
}

func writeBlob(w *bufio.Writer, b []byte) {
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(b)))
	w.Write(n[:])
	w.Write(b)
}

// readBlob reads what writeBlob wrote; io.EOF only when the stream ends
// before the blob does not start at all.
func readBlob(r *bufio.Reader, limit int) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size > limit {
		return nil, fmt.Errorf("%d bytes, more than %d", size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, noEOF(err)
	}
	return b, nil
}

// noEOF turns an EOF inside a record into the error it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
