// Command edge-spike runs the exam-spike load profile against a running local region twice in one run, first straight at the load balancer and then through the edge, and reports the edge's hit ratio for static files and materials and the fleet's CPU in each phase (scripts/edge-spike).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/proc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge-spike:", err)
		os.Exit(1)
	}
}

// Phase is one pass of the profile.
type Phase struct {
	// Via is "load balancer" or "edge"; URL the base URL browsed.
	Via string `json:"via"`
	URL string `json:"url"`
	// PageViews counts journey steps; Requests the HTTP requests they made.
	PageViews int64   `json:"page_views"`
	Requests  int64   `json:"requests"`
	Failed    int64   `json:"failed"`
	P99MS     float64 `json:"p99_ms"`
	// FleetCPUSeconds is the CPU time the app instances used during the
	// phase; per 1000 page views below, and FleetCPUPercent the average
	// over the phase in percent of one core.
	FleetCPUSeconds   float64 `json:"fleet_cpu_s"`
	CPUPer1000Views   float64 `json:"fleet_cpu_s_per_1000_views"`
	FleetCPUPercent   float64 `json:"fleet_cpu_percent_of_a_core"`
	WallSeconds       float64 `json:"wall_s"`
	EdgeHits          uint64  `json:"edge_hits,omitempty"`
	EdgeMisses        uint64  `json:"edge_misses,omitempty"`
	EdgeHitRatio      float64 `json:"edge_hit_ratio,omitempty"`
	EdgeOriginFetches uint64  `json:"edge_origin_requests,omitempty"`
}

// Report is the whole run.
type Report struct {
	Profile string  `json:"profile"`
	Users   int     `json:"users"`
	Phases  []Phase `json:"phases"`
	// CPUSaved is 1 - edge CPU per view / LB CPU per view.
	CPUSaved float64 `json:"cpu_saved"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge-spike", flag.ContinueOnError)
	stateDir := fs.String("state-dir", ".haven", "the running region's state directory")
	users := fs.Int("users", 200, "students logged in (student1 … studentN)")
	base := fs.Float64("base", 10, "page views per second before and after the spike")
	peak := fs.Float64("peak", 60, "page views per second during the spike")
	before := fs.Duration("before", 10*time.Second, "time at the base rate before the spike")
	hold := fs.Duration("hold", 40*time.Second, "time at the peak")
	after := fs.Duration("after", 10*time.Second, "time at the base rate after the spike")
	password := fs.String("password", "exam-week-2026", "the seeded students' password")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := api.NewClient(*stateDir)
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if st.Edge == nil {
		return errors.New("the region runs no edge (edge.listen is empty)")
	}
	tr, err := transport(st.Endpoints.CACert)
	if err != nil {
		return err
	}
	prof := load.Spike(*base, *peak, *before, *hold, *after)
	prof.Name = "exam-spike"
	rep := Report{Profile: fmt.Sprintf("exam-spike: %g → %g → %g page views/s over %s/%s/%s", *base, *peak, *base, *before, *hold, *after), Users: *users}
	for _, ph := range []struct{ via, url string }{{"load balancer", st.Endpoints.HTTPS}, {"edge", st.Edge.URL}} {
		p, err := phase(ctx, c, tr, ph.via, ph.url, *users, *password, prof, stderr)
		if err != nil {
			return err
		}
		rep.Phases = append(rep.Phases, p)
	}
	if lb := rep.Phases[0].CPUPer1000Views; lb > 0 {
		rep.CPUSaved = 1 - rep.Phases[1].CPUPer1000Views/lb
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "%s, %d students\n", rep.Profile, rep.Users)
	for _, p := range rep.Phases {
		fmt.Fprintf(stdout, "  via %-13s %6d page views (%d requests, %d failed, p99 %.0f ms): fleet CPU %.1f s = %.2f s per 1000 views, %.0f%% of a core",
			p.Via, p.PageViews, p.Requests, p.Failed, p.P99MS, p.FleetCPUSeconds, p.CPUPer1000Views, p.FleetCPUPercent)
		if p.Via == "edge" {
			fmt.Fprintf(stdout, "; static files and materials: hit ratio %.1f%% (%d hits, %d misses)", 100*p.EdgeHitRatio, p.EdgeHits, p.EdgeMisses)
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "  the edge saves %.0f%% of the fleet's CPU per page view\n", 100*rep.CPUSaved)
	return nil
}

func transport(caPath string) (*http.Transport, error) {
	pem, err := os.ReadFile(caPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caPath)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 256, ForceAttemptHTTP2: true}, nil
}

var (
	courseLink = regexp.MustCompile(`href="/courses/(\d+)"`)
	staticLink = regexp.MustCompile(`href="(/static/[^"]+\.(?:css|svg))"`)
	matLink    = regexp.MustCompile(`href="(/materials/[^"]+)"`)
)

// page is a course page and what a view of it fetches after it: its
// static files and one of its materials.
type page struct {
	path          string
	statics, mats []string
}

// phase logs the students in at base, learns each one's course pages and
// the files they link, and runs the profile: each step a page view (the
// course page, its stylesheet and icon, one of its materials).
func phase(ctx context.Context, c *api.Client, tr *http.Transport, via, base string, n int, password string, prof load.Profile, stderr io.Writer) (Phase, error) {
	fmt.Fprintf(stderr, "edge-spike: %s: logging %d students in at %s\n", via, n, base)
	pages := make([][]page, n)
	login := func(ctx context.Context, hc *http.Client, i int) error {
		body := fmt.Sprintf(`{"email":"student%d@example.edu","password":%q}`, i+1, password)
		resp, err := hc.Post(base+"/api/login", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("log in student%d: %s (seed the region with at least --users students)", i+1, resp.Status)
		}
		home, err := get(ctx, hc, base+"/courses")
		if err != nil {
			return err
		}
		for _, m := range courseLink.FindAllStringSubmatch(home, 5) {
			p := page{path: "/courses/" + m[1]}
			body, err := get(ctx, hc, base+p.path)
			if err != nil {
				return err
			}
			for _, s := range staticLink.FindAllStringSubmatch(body, -1) {
				p.statics = append(p.statics, s[1])
			}
			for _, mm := range matLink.FindAllStringSubmatch(body, -1) {
				p.mats = append(p.mats, strings.ReplaceAll(mm[1], "&amp;", "&"))
			}
			pages[i] = append(pages[i], p)
		}
		if len(pages[i]) == 0 {
			return fmt.Errorf("student%d has no course", i+1)
		}
		return nil
	}
	us, err := load.LogIn(ctx, n, tr, 30*time.Second, login)
	if err != nil {
		return Phase{}, err
	}
	counts := make(chan [2]int64, 1)
	counts <- [2]int64{}
	journey := load.JourneyFunc(func(ctx context.Context, step uint64) load.Outcome {
		i := int(step % uint64(n))
		ps := pages[i]
		p := ps[int(step/uint64(n))%len(ps)]
		hc := us.Client(step)
		var out load.Outcome
		reqs, fails := int64(0), int64(0)
		paths := append([]string{p.path}, p.statics...)
		if len(p.mats) > 0 {
			paths = append(paths, p.mats[int(step/uint64(n*len(ps)))%len(p.mats)])
		}
		for _, path := range paths {
			reqs++
			resp, err := hc.Get(base + path)
			if err != nil {
				fails++
				out = load.Outcome{Err: err}
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				fails++
				out = load.Outcome{Status: resp.StatusCode, Err: fmt.Errorf("get %s: %s", path, resp.Status)}
			} else if out.Err == nil {
				out.Status = 200
			}
		}
		v := <-counts
		v[0] += reqs
		v[1] += fails
		counts <- v
		return out
	})
	st0, err := c.Status(ctx)
	if err != nil {
		return Phase{}, err
	}
	cpu0 := fleetCPU(st0)
	start := time.Now()
	fmt.Fprintf(stderr, "edge-spike: %s: running %s for %s\n", via, prof.Name, prof.Duration)
	res, err := load.Run(ctx, load.Config{Profile: prof, Journey: journey, Timeout: 30 * time.Second, Progress: stderr})
	if err != nil {
		return Phase{}, err
	}
	wall := time.Since(start)
	st1, err := c.Status(ctx)
	if err != nil {
		return Phase{}, err
	}
	cpu := fleetCPU(st1) - cpu0
	v := <-counts
	p := Phase{Via: via, URL: base, PageViews: res.Summary.Requests, Requests: v[0], Failed: v[1], P99MS: res.Summary.P99MS,
		FleetCPUSeconds: cpu.Seconds(), WallSeconds: wall.Seconds(), FleetCPUPercent: 100 * cpu.Seconds() / wall.Seconds()}
	if p.PageViews > 0 {
		p.CPUPer1000Views = 1000 * p.FleetCPUSeconds / float64(p.PageViews)
	}
	if via == "edge" && st0.Edge != nil && st1.Edge != nil {
		hits := (st1.Edge.Hits + st1.Edge.RefreshHits + st1.Edge.StaleIfError) - (st0.Edge.Hits + st0.Edge.RefreshHits + st0.Edge.StaleIfError)
		p.EdgeHits, p.EdgeMisses = hits, st1.Edge.Misses-st0.Edge.Misses
		p.EdgeOriginFetches = st1.Edge.OriginRequests - st0.Edge.OriginRequests
		if hits+p.EdgeMisses > 0 {
			p.EdgeHitRatio = float64(hits) / float64(hits+p.EdgeMisses)
		}
	}
	return p, nil
}

// fleetCPU sums the CPU time of the app instances the status lists (an
// instance that ended during the phase is not counted at its end).
func fleetCPU(st api.Status) time.Duration {
	var sum time.Duration
	for _, in := range st.Instances {
		if s, err := proc.ReadStat(in.PID); err == nil {
			sum += s.CPU
		}
	}
	return sum
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return string(b), nil
}
