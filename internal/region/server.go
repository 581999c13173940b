package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
)

// serveAPI listens on the state directory's unix socket (mode 0600: only the
// region's owner may drive it) and serves the daemon API.
func (r *Region) serveAPI() (func(), error) {
	sock := filepath.Join(r.opts.StateDir, api.SocketName)
	_ = os.Remove(sock) // a stale socket from a crashed daemon; the state lock says we own it
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	srv := &http.Server{Handler: r.routes(), ErrorLog: nil}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close(); _ = os.Remove(sock) }, nil
}

func (r *Region) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, r.Status())
	})
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, _ *http.Request) {
		r.requestShutdown()
		reply(w, http.StatusAccepted, map[string]string{"status": "stopping"})
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, req *http.Request) {
		after, _ := strconv.ParseInt(req.URL.Query().Get("after"), 10, 64)
		reply(w, http.StatusOK, r.events.Since(after))
	})
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, failpoint.Catalog)
	})
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, req *http.Request) {
		var in api.FaultRequest
		if !decode(w, req, &in) {
			return
		}
		out, err := r.inject(req.Context(), in)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/fleet/capacity", func(w http.ResponseWriter, req *http.Request) {
		var in api.CapacityRequest
		if !decode(w, req, &in) {
			return
		}
		if err := r.setCapacity(in); err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.routesDB(mux)
	r.routesSecrets(mux)
	return mux
}

// instanceSignals are the signals of the instance-* fault scenarios.
var instanceSignals = map[string]syscall.Signal{
	failpoint.InstanceKill: syscall.SIGKILL, failpoint.InstanceFreeze: syscall.SIGSTOP,
	failpoint.InstanceThaw: syscall.SIGCONT, failpoint.InstanceTerm: syscall.SIGTERM,
}

// inject injects one external scenario of the failpoint catalogue.
func (r *Region) inject(ctx context.Context, in api.FaultRequest) (api.FaultResult, error) {
	sc, ok := failpoint.Lookup(in.Scenario)
	if !ok || sc.Kind != failpoint.External {
		return api.FaultResult{}, fmt.Errorf("fault %q: unknown; the scenarios are %s", in.Scenario, strings.Join(failpoint.Names(failpoint.External), ", "))
	}
	if sig, ok := instanceSignals[in.Scenario]; ok {
		if err := r.signalInstance(in.Target, sig); err != nil {
			return api.FaultResult{}, &api.Error{Message: err.Error(), Status: http.StatusNotFound}
		}
		r.events.Add("drill", "fault", in.Target, fmt.Sprintf("%s: sent %s to %s", in.Scenario, sig, in.Target))
		return api.FaultResult{Scenario: in.Scenario, Target: in.Target, At: time.Now()}, nil
	}
	db := r.view().db
	if db == nil {
		return api.FaultResult{}, &api.Error{Message: "the database is not running (yet): `haven status` shows the region's phase", Status: http.StatusServiceUnavailable}
	}
	res, err := db.Inject(ctx, in.Scenario, in.Target, time.Duration(in.DelayMS)*time.Millisecond)
	out := api.FaultResult{Scenario: in.Scenario, Target: res.Node, Zone: res.Zone, PID: res.PID, At: res.At, Epoch: int64(res.Epoch),
		RestartedAt: res.RestartedAt, RestartEpoch: int64(res.RestartEpoch)}
	if err != nil {
		return out, err
	}
	r.events.Add("drill", "fault", res.Node, fmt.Sprintf("%s on %s (zone %s, pid %d)", in.Scenario, res.Node, res.Zone, res.PID))
	return out, nil
}

func decode(w http.ResponseWriter, req *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("decode request: %w", err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func replyErr(w http.ResponseWriter, code int, err error) {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status != 0 {
		code = ae.Status
	}
	reply(w, code, api.Error{Message: err.Error()})
}
