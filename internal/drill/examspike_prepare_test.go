package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
)

// fakeFleet is a daemon API that answers the calls prepareRun makes. Its
// scaler scales out once, shortly after the fleet is first seen at min, as
// leftover login datapoints made the real one do before a run.
type fakeFleet struct {
	mu       sync.Mutex
	min      int
	desired  int
	resets   int // capacity set back by the drill
	scaleOut *time.Timer
}

func (f *fakeFleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/status":
		st := api.Status{Fleet: api.Fleet{Min: f.min, Desired: f.desired, InService: min(f.desired, 2)}}
		for i := range st.Fleet.InService {
			st.Instances = append(st.Instances, api.Instance{ID: fmt.Sprintf("i-%d", i), Target: "healthy"})
		}
		if f.desired > 2 {
			st.Fleet.Pending = f.desired - 2
		}
		if f.scaleOut == nil && f.desired == 2 {
			f.scaleOut = time.AfterFunc(200*time.Millisecond, func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.desired = 3
			})
		}
		_ = json.NewEncoder(w).Encode(st)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/fleet/capacity":
		var req api.CapacityRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Desired == nil || req.Min == nil {
			http.Error(w, `{"message":"bad capacity request"}`, http.StatusBadRequest)
			return
		}
		f.min, f.desired = *req.Min, *req.Desired
		f.resets++
	case r.Method == http.MethodPost && r.URL.Path == "/v1/fleet/scaling",
		r.Method == http.MethodDelete:
	default:
		http.Error(w, `{"message":"unexpected call"}`, http.StatusNotFound)
	}
}

// TestPrepareRunWaitsOutAScaleOutAtMin: a scale-out that leftover datapoints
// trigger while the drill waits at min sets the fleet back to min and the
// wait starts again, so the run starts at min, not at the capacity the
// logins asked for.
func TestPrepareRunWaitsOutAScaleOutAtMin(t *testing.T) {
	dir, err := os.MkdirTemp("", "drill-") // a short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, api.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFleet{min: 2, desired: 2}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		f.mu.Lock()
		if f.scaleOut != nil {
			f.scaleOut.Stop()
		}
		f.mu.Unlock()
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = prepareRun(ctx, api.NewClient(dir), RunReactive, 2, time.Millisecond, 30*time.Second, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.desired != 2 || f.min != 2 || f.resets != 1 {
		t.Errorf("after prepareRun: min %d, desired %d, %d capacity resets; want the fleet set back to min 2 once and left there", f.min, f.desired, f.resets)
	}
}
