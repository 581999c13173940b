package courses

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/drill"
)

// fakeApp answers the course app's login and catalogue routes for one
// student with two courses, one of them without materials.
func fakeApp(t *testing.T, password string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/login", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Email, Password string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in.Email != "student3@example.edu" || in.Password != password {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "s", Value: "ok", Path: "/"})
	})
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if c, err := r.Cookie("s"); err != nil || c.Value != "ok" {
				http.Error(w, "login first", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /api/courses", authed(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"courses":[{"id":7},{"id":9}]}`))
	}))
	mux.HandleFunc("GET /api/courses/7", authed(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"materials":[{"id":70},{"id":71}]}`))
	}))
	mux.HandleFunc("GET /api/courses/9", authed(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"materials":[]}`)) }))
	mux.HandleFunc("GET /", authed(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/courses/9" {
			http.Error(w, "boom", http.StatusBadGateway)
		}
	}))
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestLoginJourneyAndCheck(t *testing.T) {
	srv := fakeApp(t, DefaultPassword)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	site, err := drill.NewSite(srv.URL, ca, Workload{})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	if _, err := site.Login(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "seeded") {
		t.Fatalf("unknown student logged in, or the error says nothing of the seed: %v", err)
	}
	u, err := site.Login(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	var paths, failed []string
	for range 6 {
		p, err := site.Step(context.Background(), u)
		paths = append(paths, p)
		if err != nil {
			failed = append(failed, p+": "+err.Error())
		}
	}
	want := []string{"/courses", "/courses/7", "/courses/7/materials/70/download", "/courses", "/courses/9", "/grades"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("journey = %v, want %v", paths, want)
	}
	if len(failed) != 1 || failed[0] != "/courses/9: status 502" {
		t.Errorf("failures = %v, want only /courses/9 with status 502", failed)
	}

	bad, err := drill.NewSite(srv.URL, ca, Workload{Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Login(context.Background(), 3); err == nil {
		t.Error("a wrong password logged in")
	}
}

func TestCountFetches(t *testing.T) {
	log := `{"msg":"fetched database credentials","user":"a"}
{"msg":"listening"}
not json
{"msg":"fetched database credentials"}
`
	if n := (Workload{}).CountFetches(strings.NewReader(log)); n != 2 {
		t.Errorf("CountFetches = %d, want 2", n)
	}
}
