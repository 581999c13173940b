package edge

import "sync/atomic"

// Event kinds the edge reports (Config.OnEvent).
const (
	// EventInvalidated: cached objects were removed by Invalidate.
	EventInvalidated = "invalidated"
	// EventFailover: a target's primary origin failed and requests went to
	// its secondary; reported when it starts, not per request.
	EventFailover = "origin-failover"
	// EventRecovered: a target's primary origin answers again.
	EventRecovered = "origin-recovered"
	// EventServingStale: an expired object is served because its origin
	// failed; reported once per object and error caching TTL.
	EventServingStale = "serving-stale"
)

// Event is something the edge did (Config.OnEvent).
type Event struct {
	// Kind is one of the Event* constants.
	Kind string
	// Subject is the target ID or the object's path.
	Subject string
	// Message says it in a sentence.
	Message string
	// Attrs are the facts: paths, objects, from, to, reason.
	Attrs map[string]any
}

func (e *Edge) emit(ev Event) {
	if e.cfg.OnEvent != nil {
		e.cfg.OnEvent(ev)
	}
}

// Stats is an immutable snapshot of the edge's counters since New and of its
// cache's size. Counters only grow.
type Stats struct {
	// Requests counts viewer requests.
	Requests uint64 `json:"requests"`
	// Hits counts requests of caching behaviours served from the cache
	// without waiting for the origin: fresh objects, stale-while-revalidate,
	// and requests that joined another request's origin fetch.
	Hits uint64 `json:"hits"`
	// RefreshHits counts expired objects the origin confirmed with 304.
	RefreshHits uint64 `json:"refresh_hits"`
	// Misses counts requests of caching behaviours that fetched the object
	// from the origin.
	Misses uint64 `json:"misses"`
	// StaleServed counts stale objects served: within stale-while-revalidate,
	// or because the origin failed (stale-if-error).
	StaleServed uint64 `json:"stale_served"`
	// StaleIfError counts the stale objects served because the origin failed.
	StaleIfError uint64 `json:"stale_if_error"`
	// Collapsed counts requests that joined a fetch of the same key in flight.
	Collapsed uint64 `json:"collapsed"`
	// PassThrough counts requests forwarded uncached: caching disabled,
	// methods other than GET and HEAD, or objects above MaxObjectBytes.
	PassThrough uint64 `json:"pass_through"`
	// OriginRequests counts requests sent to origins, revalidations and
	// failover attempts included.
	OriginRequests uint64 `json:"origin_requests"`
	// OriginErrors counts origin requests that failed: no connection, a
	// timeout, or a 5xx status.
	OriginErrors uint64 `json:"origin_errors"`
	// Failovers counts requests retried on an origin group's secondary.
	Failovers uint64 `json:"failovers"`
	// Denied counts requests refused for a missing or invalid signature.
	Denied uint64 `json:"denied"`
	// Rejected counts requests refused as malformed or too large.
	Rejected uint64 `json:"rejected"`
	// Invalidations counts invalidated paths; InvalidatedObjects the
	// cached objects they removed.
	Invalidations      uint64 `json:"invalidations"`
	InvalidatedObjects uint64 `json:"invalidated_objects"`
	// Evictions counts objects evicted to stay within CacheBytes.
	Evictions uint64 `json:"evictions"`
	// Compressed counts responses the edge gzipped.
	Compressed uint64 `json:"compressed"`
	// Objects and Bytes are the cache's current size.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// HitRatio is (Hits + RefreshHits + StaleIfError) divided by that plus
	// Misses: CloudFront's cache hit rate. 0 before any cacheable request.
	HitRatio float64 `json:"hit_ratio"`
}

// counters are the live counters behind Stats.
type counters struct {
	requests, hits, refreshHits, misses, staleServed, staleIfError, collapsed, passThrough,
	originRequests, originErrors, failovers, denied, rejected, invalidations,
	invalidatedObjects, compressed atomic.Uint64
}

// Stats returns a snapshot of the counters. Each counter is read
// atomically and the cache size comes from the snapshot the store
// publishes (an atomic.Pointer swapped under its lock), so a snapshot never
// shows a torn value; counters read a few nanoseconds apart may differ by a
// request in flight.
func (e *Edge) Stats() Stats {
	c := &e.stats
	g := e.store.gauges.Load()
	s := Stats{
		Requests: c.requests.Load(), Hits: c.hits.Load(), RefreshHits: c.refreshHits.Load(),
		Misses: c.misses.Load(), StaleServed: c.staleServed.Load(), StaleIfError: c.staleIfError.Load(),
		Collapsed: c.collapsed.Load(), PassThrough: c.passThrough.Load(),
		OriginRequests: c.originRequests.Load(), OriginErrors: c.originErrors.Load(),
		Failovers: c.failovers.Load(), Denied: c.denied.Load(), Rejected: c.rejected.Load(),
		Invalidations: c.invalidations.Load(), InvalidatedObjects: c.invalidatedObjects.Load(),
		Evictions: e.store.evictions.Load(), Compressed: c.compressed.Load(),
		Objects: g.entries, Bytes: g.bytes,
	}
	served := s.Hits + s.RefreshHits + s.StaleIfError
	if total := served + s.Misses; total > 0 {
		s.HitRatio = float64(served) / float64(total)
	}
	return s
}
