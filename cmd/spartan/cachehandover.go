package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"golang.org/x/sys/unix"
)

// A reload carries the answer cache over to the new process (cache.Dump and
// cache.Load): the process we replace writes its entries into a pipe while
// the new one starts, and the new one reads them before it serves. The cache
// is what answers while the masters or upstreams are down, and that is when
// reloads happen.

// envUpgradeCacheFD names the pipe a reload's new process reads the cache
// from.
const envUpgradeCacheFD = "SPARTAN_UPGRADE_CACHE_FD"

// cacheLoadTimeout bounds how long a new process waits for the dump before
// it serves with what it has: the old process writes it from memory, in
// well under a second for max_entries of 10000.
const cacheLoadTimeout = 3 * time.Second

// routingTag digests what decides which upstreams answer a name. A new
// process whose routing differs loads no entry: answers cached from the old
// upstreams must not outlive a change that moved their names elsewhere.
func routingTag(cfg *config.Config) string {
	b, _ := json.Marshal(struct {
		Upstreams  any
		Zones      any
		Source     string
		Exhibitor  string
		URI        string
		MasterList string
		ZK         []string
		ZKPath     string
		MesosPort  int
	}{cfg.UpstreamResolvers, cfg.ForwardZones, cfg.MasterSource, cfg.ExhibitorAddress, cfg.ExhibitorURI,
		cfg.MasterListFile, cfg.ZookeeperServers, cfg.ZookeeperMesosPath, cfg.MesosDNSPort})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// sendCache writes c's dump into w and closes it; a new process that does
// not read it (it has the cache off, or exited) costs at most the deadline.
func sendCache(c *cache.Cache, tag string, w *os.File, log zerolog.Logger) {
	defer w.Close()
	_ = w.SetWriteDeadline(time.Now().Add(2 * cacheLoadTimeout))
	started := time.Now()
	n, err := c.Dump(w, c.Now(), tag)
	if err != nil {
		log.Warn().Err(err).Int("entries", n).Msg("reload: cache not handed over whole")
		return
	}
	log.Info().Int("entries", n).Dur("took", time.Since(started)).Msg("reload: cache handed over")
}

// receiveCache loads the cache a reload's parent sends (envUpgradeCacheFD)
// into c, which may be nil (the new config turns the cache off).
func receiveCache(c *cache.Cache, tag string, log zerolog.Logger) {
	v := os.Getenv(envUpgradeCacheFD)
	_ = os.Unsetenv(envUpgradeCacheFD)
	fd, err := strconv.Atoi(v)
	if v == "" || err != nil || fd < 3 {
		return
	}
	unix.CloseOnExec(fd)
	// Non-blocking, so that the runtime poller serves it and the deadline
	// holds (a descriptor passed to a child arrives blocking).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	r := os.NewFile(uintptr(fd), "cache-handover")
	defer r.Close()
	if c == nil {
		return
	}
	_ = r.SetReadDeadline(time.Now().Add(cacheLoadTimeout))
	started := time.Now()
	n, err := c.Load(r, c.Now(), tag, forwarder.NumRouteKinds)
	switch {
	case errors.Is(err, cache.ErrOtherRouting):
		log.Info().Msg("reload: the routing config changed: the previous process's cache is not taken over")
	case err != nil:
		log.Warn().Err(err).Int("entries", n).Msg("reload: cache taken over in part")
	default:
		log.Info().Int("entries", n).Dur("took", time.Since(started)).Msg("reload: cache taken over")
	}
}
