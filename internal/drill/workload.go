package drill

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/api"
)

// Workload is what a drill drives through the load balancer: how a virtual
// user logs in, the steady journey it then walks, and which responses count
// as failures. The drills know workloads, not apps: the sample app's is
// internal/workload/courses, and another app plugs in its own.
type Workload interface {
	// Name names the workload in reports, e.g. "courses".
	Name() string
	// Login logs virtual user n (1, 2, ...) in through c, whose cookie jar
	// keeps the session, and returns the journey the user then walks. An
	// error means the user could not log in; it should say what to do (seed
	// the region, check the password).
	Login(ctx context.Context, c *Client, n int) (Journey, error)
	// Check says whether one response of a journey (resp, with its body
	// read into body) or the transport error err counts as a failed request:
	// nil for a success.
	Check(req Request, resp *http.Response, body []byte, err error) error
}

// Journey is one logged-in user's steady walk through the site. It is
// called from one goroutine at a time.
type Journey interface {
	// Next returns the user's next request.
	Next() Request
}

// FetchCounter is an optional part of a Workload: it counts, in an
// instance's log, the secret fetches the app logged, so the rotation drill
// can check that the audit trail holds every one.
type FetchCounter interface {
	// CountFetches counts the app's secret fetches in one log.
	CountFetches(log io.Reader) int
}

// Request is one HTTP request of a journey or a login.
type Request struct {
	// Method defaults to GET.
	Method string
	// Path is the path and query, e.g. "/courses/7".
	Path string
	// Body is sent with Content-Type application/json when set.
	Body []byte
}

// Client is one virtual user's HTTP client: it trusts the region's CA and
// keeps the user's cookies.
type Client struct {
	// BaseURL is the load balancer's HTTPS URL, without a trailing slash.
	BaseURL string
	// HTTP carries the user's cookie jar.
	HTTP *http.Client
}

// Do sends r and returns the response with its body read (at most 64 MiB).
func (c *Client) Do(ctx context.Context, r Request) (*http.Response, []byte, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+r.Path, body)
	if err != nil {
		return nil, nil, err
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp, data, fmt.Errorf("read body: %w", err)
	}
	return resp, data, nil
}

// Site drives a workload's journeys through the load balancer.
type Site struct {
	BaseURL   string
	Workload  Workload
	transport *http.Transport
}

// User is one logged-in virtual user.
type User struct {
	N       int
	client  *Client
	journey Journey
	mu      sync.Mutex
}

// NewSite returns a site client trusting caPEM.
func NewSite(baseURL string, caPEM []byte, w Workload) (*Site, error) {
	if w == nil {
		return nil, errors.New("drill: no workload: name one (the sample app's is courses)")
	}
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
	return &Site{BaseURL: strings.TrimRight(baseURL, "/"), Workload: w, transport: tr}, nil
}

// OpenSite trusts the region's CA (read from st) and logs users 1..n of the
// workload in through the load balancer. On error nothing is left open.
func OpenSite(ctx context.Context, st api.Status, n int, w Workload) (*Site, []*User, error) {
	ca, err := os.ReadFile(st.Endpoints.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("read region CA: %w", err)
	}
	site, err := NewSite(st.Endpoints.HTTPS, ca, w)
	if err != nil {
		return nil, nil, err
	}
	// Up to 4 logins at a time: a login is a password check (bcrypt), the
	// costliest request an instance answers.
	users := make([]*User, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			// A login that meets a busy or draining instance is tried again.
			for try := 0; try < 3; try++ {
				if users[i], errs[i] = site.Login(ctx, i+1); errs[i] == nil || ctx.Err() != nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}(i)
	}
	wg.Wait()
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if first != nil {
		site.Close()
		if failed > 1 {
			first = fmt.Errorf("%w (and %d more logins failed)", first, failed-1)
		}
		return nil, nil, first
	}
	return site, users, nil
}

// Close releases idle connections.
func (s *Site) Close() { s.transport.CloseIdleConnections() }

// NewClient returns a fresh client (an empty cookie jar) for one user.
func (s *Site) NewClient() *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{BaseURL: s.BaseURL, HTTP: &http.Client{Transport: s.transport, Jar: jar, Timeout: 20 * time.Second}}
}

// Login logs virtual user n in with the site's workload.
func (s *Site) Login(ctx context.Context, n int) (*User, error) {
	c := s.NewClient()
	j, err := s.Workload.Login(ctx, c, n)
	if err != nil {
		return nil, fmt.Errorf("%s workload: %w", s.Workload.Name(), err)
	}
	return &User{N: n, client: c, journey: j}, nil
}

// Step performs the user's next journey step and returns its path and
// outcome as the workload judges it.
func (s *Site) Step(ctx context.Context, u *User) (string, error) {
	path, _, err := s.StepStatus(ctx, u)
	return path, err
}

// StepStatus is Step that also returns the response's status code (0 when
// no response arrived).
func (s *Site) StepStatus(ctx context.Context, u *User) (string, int, error) {
	u.mu.Lock()
	r := u.journey.Next()
	u.mu.Unlock()
	resp, body, err := u.client.Do(ctx, r)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	return r.Path, status, s.Workload.Check(r, resp, body, err)
}
