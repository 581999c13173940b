package objstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/unixsock"
)

// The control socket, dir/admin.sock (mode 0600, peers must run as the
// server's user or root), is how the daemon drives a store that outlives it:
//
//	GET    /v1/health                        Health
//	GET    /v1/status                        the latest Status snapshot
//	PUT    /v1/credentials                   register a Credential (204)
//	DELETE /v1/credentials/{id}              forget one (204, 404 if unknown)
//	DELETE /v1/instances/{id}/credentials    forget an instance's ({"revoked": n})
//	POST   /v1/reload                        reread config.json (204; 409 with the reason)
//
// Errors are {"error": "..."}.

// Health is the answer to GET /v1/health.
type Health struct {
	// PID is the serving process; Process compares it with the pid file.
	PID int `json:"pid"`
	// Ready is true once the S3 endpoint serves.
	Ready bool `json:"ready"`
	// Endpoint is the S3 endpoint URL.
	Endpoint string `json:"endpoint"`
	// Generation counts configuration loads.
	Generation int64 `json:"generation"`
}

// Credential is one temporary credential as registered over the control
// socket: haven's iam.Credentials with JSON names.
type Credential struct {
	// AccessKeyID is the temporary access key id (ASIA…). Required.
	AccessKeyID string `json:"accessKeyId"`
	// SecretAccessKey is its secret; it stays in the store's memory. Required.
	SecretAccessKey string `json:"secretAccessKey"`
	// SessionToken must accompany every request signed with the key. Required.
	SessionToken string `json:"sessionToken"`
	// Expiration is when the store stops accepting the key. Required.
	Expiration time.Time `json:"expiration"`
	// Principal is the role (and instance) the key acts as; its account must
	// be the store's. Required.
	Principal iam.Principal `json:"principal"`
}

// CredentialOf converts haven's credentials for the control socket.
func CredentialOf(c iam.Credentials) Credential {
	return Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expiration: c.Expiration, Principal: c.Principal}
}

func (c Credential) iam() iam.Credentials {
	return iam.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expiration: c.Expiration, Principal: c.Principal}
}

// listenAdmin opens dir/admin.sock, replacing a stale one (the directory lock
// is held, so no other server owns it): mode 0600, peers checked with
// SO_PEERCRED (unixsock.Listen).
func (s *server) listenAdmin() (net.Listener, error) {
	ln, err := unixsock.Listen(filepath.Join(s.dir, SocketFile))
	if err != nil {
		return nil, fmt.Errorf("start object store: control socket: %w", err)
	}
	return ln, nil
}

func (s *server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		st := s.status()
		writeJSON(w, http.StatusOK, Health{PID: os.Getpid(), Ready: s.stats.ready.Load(), Endpoint: st.Endpoint, Generation: s.gen.Load()})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.status())
	})
	mux.HandleFunc("PUT /v1/credentials", func(w http.ResponseWriter, r *http.Request) {
		var c Credential
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("decode credential: %w", err))
			return
		}
		if err := s.keys.Put(c.iam()); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		s.log.Info("credentials registered", "access_key_id", c.AccessKeyID, "role", c.Principal.Role, "instance", c.Principal.InstanceID, "expiration", c.Expiration)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v1/credentials/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !s.keys.Revoke(id) {
			writeError(w, http.StatusNotFound, fmt.Errorf("revoke credentials %s: not held", id))
			return
		}
		s.log.Info("credentials revoked", "access_key_id", id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v1/instances/{id}/credentials", func(w http.ResponseWriter, r *http.Request) {
		n := s.keys.RevokeInstance(r.PathValue("id"))
		s.log.Info("instance credentials revoked", "instance", r.PathValue("id"), "revoked", n)
		writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := s.reload(r.Context()); err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// apiError is an error answered by the control socket: its HTTP status and
// the server's message.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// ErrNotHeld is returned by Client.Revoke for a credential the store does not hold.
var ErrNotHeld = errors.New("credential not held")
