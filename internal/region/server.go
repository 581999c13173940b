package region

import (
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

	"github.com/haven-platform/haven/internal/api"
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
	mux.HandleFunc("POST /v1/instances/{id}/signal", func(w http.ResponseWriter, req *http.Request) {
		var in api.SignalRequest
		if !decode(w, req, &in) {
			return
		}
		sig, ok := signals[strings.TrimPrefix(strings.ToUpper(in.Signal), "SIG")]
		if !ok {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("signal %q: must be one of KILL, STOP, CONT, TERM", in.Signal))
			return
		}
		id := req.PathValue("id")
		if err := r.signalInstance(id, sig); err != nil {
			replyErr(w, http.StatusNotFound, err)
			return
		}
		r.events.Add("drill", "signal", id, "sent SIG"+strings.TrimPrefix(strings.ToUpper(in.Signal), "SIG"))
		reply(w, http.StatusOK, map[string]string{"status": "sent"})
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

var signals = map[string]syscall.Signal{"KILL": syscall.SIGKILL, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT, "TERM": syscall.SIGTERM}

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
