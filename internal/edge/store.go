package edge

import (
	"container/list"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one cached response. It is immutable once built: refreshing,
// marking an origin failure or compressing makes a new entry.
type entry struct {
	key  string
	path string // raw request path, for invalidation
	// status, header and body are what viewers get; header holds no
	// hop-by-hop, Age, Via or X-Cache field.
	status int
	header http.Header
	body   []byte
	// lengthValue is len(body) as a Content-Length value.
	lengthValue []string
	// originETag and lastModified are the origin's validators, sent back
	// when the entry is revalidated; modTime is lastModified parsed.
	originETag, lastModified string
	modTime                  time.Time
	// born is when the response was generated: the time it was received
	// minus the origin's Age. The entry's age is now − born.
	born time.Time
	// ttl, swr, sie, noStale and isError come from decideStore.
	ttl, swr, sie time.Duration
	noStale       bool
	isError       bool
	// edgeCompressed reports a body the edge compressed; its ETag is the
	// origin's, made weak.
	edgeCompressed bool
	// failedUntil, when in the future, means the origin failed to
	// revalidate the entry and is not asked again before then.
	failedUntil time.Time
	// size is the budget the entry takes: body, header and key.
	size int64

	elem *list.Element // guarded by store.mu
}

func (e *entry) age(now time.Time) time.Duration { return max(now.Sub(e.born), 0) }

// with returns a copy of e that is not in any store.
func (e *entry) with(f func(*entry)) *entry {
	c := *e
	c.elem = nil
	f(&c)
	return &c
}

func entrySize(key string, h http.Header, body []byte) int64 {
	n := int64(len(key)+len(body)) + 256 // struct and map overhead
	for k, vs := range h {
		n += int64(len(k)) + 16
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// storeGauges is the store's published state.
type storeGauges struct {
	entries int
	bytes   int64
}

// invalidation is one Invalidate call, numbered.
type invalidation struct {
	seq      uint64
	patterns []string
}

// maxInvalidationHistory bounds the invalidations kept to check fetches that
// were in flight when they happened; a fetch older than the history is not
// stored.
const maxInvalidationHistory = 1024

// store is the edge's memory: a map of entries with a byte budget and
// least-recently-used eviction, and the invalidation history.
type store struct {
	budget int64

	mu     sync.Mutex
	used   int64
	items  map[string]*entry
	lru    list.List // front: most recently used
	seq    uint64    // number of the last invalidation
	invals []invalidation

	gauges    atomic.Pointer[storeGauges]
	evictions atomic.Uint64
}

func newStore(budget int64) *store {
	s := &store{budget: budget, items: map[string]*entry{}}
	s.gauges.Store(&storeGauges{})
	return s
}

// get returns the entry for key and marks it used, or nil.
func (s *store) get(key string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.items[key]
	if e != nil {
		s.lru.MoveToFront(e.elem)
	}
	return e
}

// generation returns the number of the last invalidation. A fetch records
// it when it starts and passes it to put.
func (s *store) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// put stores e unless an invalidation matching its path happened after
// generation since, and evicts least recently used entries beyond the
// budget. It reports whether e was stored.
func (s *store) put(e *entry, since uint64) bool {
	e.size = entrySize(e.key, e.header, e.body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.size > s.budget || s.invalidatedSinceLocked(e.path, since) {
		return false
	}
	if old := s.items[e.key]; old != nil {
		s.removeLocked(old)
	}
	e.elem = s.lru.PushFront(e)
	s.items[e.key] = e
	s.used += e.size
	for s.used > s.budget {
		last := s.lru.Back().Value.(*entry)
		s.removeLocked(last)
		s.evictions.Add(1)
	}
	s.publishLocked()
	return true
}

// replace stores e in place of the entry it was copied from, if that entry
// is still the current one for the key. It reports whether it did.
func (s *store) replace(old, e *entry) bool {
	e.size = entrySize(e.key, e.header, e.body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.items[e.key] != old || old.elem == nil {
		return false
	}
	s.removeLocked(old)
	e.elem = s.lru.PushFront(e)
	s.items[e.key] = e
	s.used += e.size
	for s.used > s.budget && s.lru.Len() > 1 {
		s.removeLocked(s.lru.Back().Value.(*entry))
		s.evictions.Add(1)
	}
	s.publishLocked()
	return true
}

func (s *store) removeLocked(e *entry) {
	s.lru.Remove(e.elem)
	e.elem = nil
	delete(s.items, e.key)
	s.used -= e.size
}

func (s *store) publishLocked() {
	s.gauges.Store(&storeGauges{entries: len(s.items), bytes: s.used})
}

func (s *store) invalidatedSinceLocked(path string, since uint64) bool {
	if since == s.seq {
		return false
	}
	if len(s.invals) == 0 || s.invals[0].seq > since+1 {
		return true // the history no longer reaches back to since
	}
	for _, inv := range s.invals {
		if inv.seq > since && matchInvalidation(inv.patterns, path) {
			return true
		}
	}
	return false
}

// invalidate removes every entry whose path matches one of patterns and
// records the invalidation, so fetches in flight do not store what it
// removed. It returns how many entries it removed.
func (s *store) invalidate(patterns []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.invals = append(s.invals, invalidation{seq: s.seq, patterns: patterns})
	if len(s.invals) > maxInvalidationHistory {
		s.invals = s.invals[len(s.invals)-maxInvalidationHistory:]
	}
	n := 0
	for _, e := range s.items {
		if matchInvalidation(patterns, e.path) {
			s.removeLocked(e)
			n++
		}
	}
	s.publishLocked()
	return n
}

// matchInvalidation matches CloudFront invalidation paths: exact, or a
// prefix when the path ends in *. A path covers every cached variant of an
// object (query strings, headers, cookies, encodings).
func matchInvalidation(patterns []string, path string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(path, prefix) {
				return true
			}
		} else if p == path {
			return true
		}
	}
	return false
}

// checkInvalidationPath accepts CloudFront invalidation paths: starting
// with /, at most 4096 bytes, with * only as the last character.
func checkInvalidationPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case p[0] != '/':
		return fmt.Errorf("path %q must start with /", p)
	case len(p) > 4096:
		return fmt.Errorf("path of %d bytes is longer than 4096", len(p))
	case strings.Contains(strings.TrimSuffix(p, "*"), "*"):
		return fmt.Errorf("path %q may have * only as its last character", p)
	case strings.ContainsAny(p, " \t\r\n?#"):
		return fmt.Errorf("path %q must not contain whitespace, ? or #", p)
	}
	return nil
}
