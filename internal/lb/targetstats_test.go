package lb

import (
	"net/http"
	"testing"
	"time"
)

// TestPerTargetCounts: each target counts the responses that ended on it,
// its 5xx and their latency buckets, so a rollout can compare versions.
func TestPerTargetCounts(t *testing.T) {
	l, c := startLB(t, nil)
	good := newBackend(t, "good", nil)
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(120 * time.Millisecond)
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	register(t, l, "good", "a", good.addr())
	register(t, l, "bad", "b", bad.addr())
	waitState(t, l, "good", StateHealthy)
	waitState(t, l, "bad", StateHealthy)
	for range 20 {
		resp, err := c.Get(l.HTTPSURL() + "/slow")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A request is counted once its answer has been written (on the
	// HTTP/1.1 loop, just after the client may have read it).
	got := map[string]TargetStatus{}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		for _, ts := range l.Targets() {
			got[ts.ID] = ts
		}
		if got["good"].Requests+got["bad"].Requests >= 20 || time.Now().After(deadline) {
			break
		}
	}
	g, b := got["good"], got["bad"]
	if g.Requests != 10 || g.Responses5xx != 0 || b.Requests != 10 || b.Responses5xx != 10 {
		t.Fatalf("good %d requests %d 5xx, bad %d requests %d 5xx; want 10/0 and 10/10", g.Requests, g.Responses5xx, b.Requests, b.Responses5xx)
	}
	if len(b.Latency) != len(LatencyBounds)+1 {
		t.Fatalf("latency buckets: %d", len(b.Latency))
	}
	var slow uint64 // above 100ms
	for i, n := range b.Latency {
		if i >= len(LatencyBounds) || LatencyBounds[i] > 100*time.Millisecond {
			slow += n
		}
	}
	if slow != 10 {
		t.Errorf("bad target's requests above 100ms: %d of 10 (buckets %v)", slow, b.Latency)
	}
}
