// Package drill runs failure drills against a live region and reports what users saw, with numbers.
package drill

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/api"
)

// User is a logged-in virtual student walking through the course site.
type User struct {
	Email   string
	client  *http.Client
	courses []int64
	mats    map[int64][]int64 // course → material ids
	step    int
	mu      sync.Mutex
}

// Site drives user journeys through the load balancer.
type Site struct {
	BaseURL   string
	transport *http.Transport
}

// NewSite returns a site client trusting the region's CA.
func NewSite(baseURL string, caPEM []byte) (*Site, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("read CA certificate: no PEM certificate found")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Site{BaseURL: strings.TrimRight(baseURL, "/"), transport: tr}, nil
}

// OpenSite trusts the region's CA (read from st) and logs the seeded students
// student1..studentN in through the load balancer. On error nothing is left open.
func OpenSite(ctx context.Context, st api.Status, n int, password string) (*Site, []*User, error) {
	ca, err := os.ReadFile(st.Endpoints.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("read region CA: %w", err)
	}
	site, err := NewSite(st.Endpoints.HTTPS, ca)
	if err != nil {
		return nil, nil, err
	}
	users := make([]*User, 0, n)
	for i := 1; i <= n; i++ {
		u, err := site.Login(ctx, fmt.Sprintf("student%d@example.edu", i), password)
		if err != nil {
			site.Close()
			return nil, nil, err
		}
		users = append(users, u)
	}
	return site, users, nil
}

// Close releases idle connections.
func (s *Site) Close() { s.transport.CloseIdleConnections() }

// Login logs a seeded user in through the JSON API and learns their courses.
func (s *Site) Login(ctx context.Context, email, password string) (*User, error) {
	jar, _ := cookiejar.New(nil)
	u := &User{Email: email, client: &http.Client{Transport: s.transport, Jar: jar, Timeout: 20 * time.Second}, mats: map[int64][]int64{}}
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.BaseURL+"/api/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("log in %s: %w", email, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("log in %s: %s (is the region seeded? the seed's demo password is printed by `courses seed`)", email, resp.Status)
	}
	var courses []struct {
		ID int64 `json:"id"`
	}
	if err := s.getJSON(ctx, u, "/api/courses", &courses, "courses"); err != nil {
		return nil, err
	}
	for _, c := range courses {
		u.courses = append(u.courses, c.ID)
		var detail struct {
			Materials []struct {
				ID int64 `json:"id"`
			} `json:"materials"`
		}
		if err := s.getJSON(ctx, u, fmt.Sprintf("/api/courses/%d", c.ID), &detail, ""); err != nil {
			return nil, err
		}
		for _, m := range detail.Materials {
			u.mats[c.ID] = append(u.mats[c.ID], m.ID)
		}
	}
	if len(u.courses) == 0 {
		return nil, fmt.Errorf("log in %s: the user has no courses; seed the region first", email)
	}
	return u, nil
}

// getJSON fetches path; when key is set and the body is an object, the value
// under key is decoded instead of the whole body.
func (s *Site) getJSON(ctx context.Context, u *User, path string, v any, key string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+path, nil)
	resp, err := u.client.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", path, resp.Status)
	}
	if key != "" && len(data) > 0 && data[0] == '{' {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			return err
		}
		data = obj[key]
	}
	return json.Unmarshal(data, v)
}

// Step performs the user's next journey step (dashboard, course page,
// material download) and returns the path and the outcome.
func (s *Site) Step(ctx context.Context, u *User) (string, error) {
	u.mu.Lock()
	n := u.step
	u.step++
	u.mu.Unlock()
	c := u.courses[n/3%len(u.courses)]
	var path string
	switch n % 3 {
	case 0:
		path = "/courses"
	case 1:
		path = fmt.Sprintf("/courses/%d", c)
	default:
		if ms := u.mats[c]; len(ms) > 0 {
			path = fmt.Sprintf("/courses/%d/materials/%d/download", c, ms[n/3%len(ms)])
		} else {
			path = "/grades"
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+path, nil)
	resp, err := u.client.Do(req)
	if err != nil {
		return path, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return path, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return path, fmt.Errorf("status %d", resp.StatusCode)
	}
	return path, nil
}

// Recorder collects request outcomes and latencies.
type Recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	failed    int64
	errs      map[string]int
	failures  []Failure
}

// Failure is one failed request, kept for the report.
type Failure struct {
	At    time.Time `json:"at"`
	Path  string    `json:"path"`
	Error string    `json:"error"`
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{errs: map[string]int{}} }

// Record adds one request's outcome.
func (r *Recorder) Record(path string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latencies = append(r.latencies, d)
	if err != nil {
		r.failed++
		msg := err.Error()
		if len(msg) > 160 {
			msg = msg[:160]
		}
		r.errs[msg]++
		if len(r.failures) < 50 {
			r.failures = append(r.failures, Failure{At: time.Now().UTC(), Path: path, Error: msg})
		}
	}
}

// Summary is the recorder's totals.
type Summary struct {
	Requests int64          `json:"requests"`
	Failed   int64          `json:"failed"`
	P50MS    float64        `json:"p50_ms"`
	P99MS    float64        `json:"p99_ms"`
	MaxMS    float64        `json:"max_ms"`
	Errors   map[string]int `json:"errors,omitempty"`
	Failures []Failure      `json:"failures,omitempty"`
}

// Summary computes the totals so far.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := append([]time.Duration(nil), r.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	s := Summary{Requests: int64(len(l)), Failed: r.failed, Errors: map[string]int{}, Failures: r.failures}
	for k, v := range r.errs {
		s.Errors[k] = v
	}
	if len(l) > 0 {
		s.P50MS = ms(quantile(l, 0.50))
		s.P99MS = ms(quantile(l, 0.99))
		s.MaxMS = ms(l[len(l)-1])
	}
	return s
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// RunLoad issues journey steps at rate per second, spread over users, until
// ctx is done. Requests are scheduled on a fixed timeline (the n-th at
// start + n/rate), so a busy machine delays them but does not drop them.
// It never runs more than maxInFlight requests at once.
func RunLoad(ctx context.Context, s *Site, users []*User, rate int, rec *Recorder) {
	const maxInFlight = 256
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for n := 0; ; n++ {
		if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				wg.Wait()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			wg.Wait()
			return
		}
		u := users[n%len(users)]
		select {
		case sem <- struct{}{}:
		default:
			rec.Record("(client)", 0, errors.New("load generator saturated: 256 requests in flight"))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			t0 := time.Now()
			path, err := s.Step(rctx, u)
			rec.Record(path, time.Since(t0), err)
		}()
	}
}
