// Package routes serves the daemon API: one file per tier, each handler talking to a narrow interface of its tier, never to the region.
package routes

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/haven-platform/haven/internal/api"
)

// Events is where handlers record what operators did (*events.Log).
type Events interface {
	Add(component, kind, subject, msg string)
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

// replyErr answers err; an *api.Error with a Status picks the code.
func replyErr(w http.ResponseWriter, code int, err error) {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status != 0 {
		code = ae.Status
	}
	reply(w, code, api.Error{Message: err.Error()})
}

// unavailable is the error of a route whose tier is not running (yet).
func unavailable(msg string) error {
	return &api.Error{Message: msg, Status: http.StatusServiceUnavailable}
}
