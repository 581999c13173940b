package drill

import (
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/pgha/ledger"
)

func TestFirstOKAfter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ops := []ledger.Op{
		{Outcome: ledger.OK, Start: at(-5), End: at(3)},       // begun before the fault: not a recovery
		{Outcome: ledger.Fail, Start: at(10), End: at(20)},    // failed
		{Outcome: ledger.Unknown, Start: at(15), End: at(30)}, // unknown
		{Outcome: ledger.OK, Start: at(100), End: at(400)},
		{Outcome: ledger.OK, Start: at(200), End: at(250)}, // acknowledged first, listed later
	}
	tests := []struct {
		name  string
		fault time.Time
		want  time.Time
	}{
		{"first ack of an op begun after the fault", at(0), at(250)},
		{"op begun exactly at the fault counts", at(200), at(250)},
		{"none after", at(300), time.Time{}},
	}
	for _, tt := range tests {
		if got := firstOKAfter(ops, tt.fault); !got.Equal(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHealthy(t *testing.T) {
	good := api.DBStatus{Epoch: 3, EndpointEpoch: 3, StandbyEligible: true, SyncEnabled: true, SyncState: "sync", ReplicationState: "streaming",
		Nodes: []api.DBNodeStatus{{Name: "a", Role: "primary"}, {Name: "b", Role: "standby"}}}
	tests := []struct {
		name string
		mut  func(*api.DBStatus)
		want bool
	}{
		{"whole pair", func(*api.DBStatus) {}, true},
		{"endpoint behind", func(s *api.DBStatus) { s.EndpointEpoch = 0 }, false},
		{"standby not eligible", func(s *api.DBStatus) { s.StandbyEligible = false }, false},
		{"standby async", func(s *api.DBStatus) { s.SyncState = "async" }, false},
		{"standby catching up", func(s *api.DBStatus) { s.ReplicationState = "catchup" }, false},
		{"standby rebuilding", func(s *api.DBStatus) { s.Nodes[1].Role = "rebuilding" }, false},
		{"two primaries", func(s *api.DBStatus) { s.Nodes[1].Role = "primary" }, false},
		{"sync off", func(s *api.DBStatus) { s.SyncEnabled = false }, false},
	}
	for _, tt := range tests {
		st := good
		st.Nodes = append([]api.DBNodeStatus(nil), good.Nodes...)
		tt.mut(&st)
		if got := healthy(st); got != tt.want {
			t.Errorf("%s: healthy = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{1}, 1}, {[]float64{1, 3}, 2}, {[]float64{1, 2, 9}, 2}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
