package courses

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
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
		w.Write([]byte(`{"course":{"id":7,"students":40},"materials":[{"id":70},{"id":71}]}`))
	}))
	mux.HandleFunc("GET /api/courses/9", authed(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"course":{"id":9,"students":300},"materials":[]}`))
	}))
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
	// 300 visits of three requests: dashboard, a course, its material (or
	// grades when it has none). Course 9 has more students, so Zipf
	// popularity sends more visits to it.
	visits := map[string]int{}
	failed := map[string]int{}
	for v := range 300 {
		var paths []string
		for range 3 {
			p, status, err := site.StepStatus(context.Background(), u)
			paths = append(paths, p)
			if err != nil {
				failed[fmt.Sprintf("%s: %d %v", p, status, err)]++
			}
		}
		visits[paths[1]]++
		want := map[string][]string{
			"/courses/7": {"/courses", "/courses/7", fmt.Sprintf("/courses/7/materials/%d/download", 70+v%2)},
			"/courses/9": {"/courses", "/courses/9", "/grades"},
		}[paths[1]]
		if strings.Join(paths, " ") != strings.Join(want, " ") {
			t.Fatalf("visit %d = %v, want %v", v, paths, want)
		}
	}
	if visits["/courses/9"] <= visits["/courses/7"] || visits["/courses/7"] == 0 {
		t.Errorf("visits = %v, want the more popular course 9 visited more, and course 7 sometimes", visits)
	}
	if len(failed) != 1 || failed["/courses/9: 502 status 502"] != visits["/courses/9"] {
		t.Errorf("failures = %v, want every /courses/9 visit failing with status 502", failed)
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
