package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// faultEnv names a deliberately bad build, for rehearsing bad deploys
// (haven drill bad-deploy): a version deployed with COURSES_FAULT set
// behaves as a broken release would. Unset (the default), nothing changes.
//
//	crash      exits at start
//	unhealthy  GET /healthz answers 503
//	errors     GET /courses/{id} answers 500
//	slow       every response but /healthz waits 2 s more
const faultEnv = "COURSES_FAULT"

// buildFault reads and checks COURSES_FAULT.
func buildFault() (string, error) {
	f := os.Getenv(faultEnv)
	switch f {
	case "", "crash", "unhealthy", "errors", "slow":
		return f, nil
	}
	return "", fmt.Errorf("%s=%q: must be crash, unhealthy, errors or slow (or unset)", faultEnv, f)
}

// withFault wraps h with the build's fault.
func withFault(fault string, h http.Handler) http.Handler {
	switch fault {
	case "unhealthy":
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				http.Error(w, "unhealthy build ("+faultEnv+"=unhealthy)", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	case "errors":
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := strings.TrimPrefix(r.URL.Path, "/courses/"); p != r.URL.Path && p != "" && !strings.Contains(p, "/") {
				http.Error(w, "broken build ("+faultEnv+"=errors)", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		})
	case "slow":
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
	return h
}
