package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"time"
)

// LoginFunc logs virtual user i (from 0) in with c; the session cookie lands
// in c's own cookie jar.
type LoginFunc func(ctx context.Context, c *http.Client, i int) error

// Users is a set of logged-in virtual users, each an http.Client with its own
// cookie jar over one shared transport.
type Users struct {
	clients []*http.Client
}

// LogIn logs n users in through login, at most 8 at a time, each client with
// a cookie jar over tr and the given per-request timeout. On error none is
// returned.
func LogIn(ctx context.Context, n int, tr http.RoundTripper, timeout time.Duration, login LoginFunc) (*Users, error) {
	if n < 1 {
		return nil, fmt.Errorf("log in users: need at least 1, got %d", n)
	}
	u := &Users{clients: make([]*http.Client, n)}
	for i := range u.clients {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return nil, fmt.Errorf("log in users: %w", err)
		}
		u.clients[i] = &http.Client{Transport: tr, Jar: jar, Timeout: timeout}
	}
	sem := make(chan struct{}, 8)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range u.clients {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := login(ctx, u.clients[i], i); err != nil {
				errs[i] = fmt.Errorf("log in user %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return u, nil
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.clients) }

// Client returns the client of the user whose turn request n is (round robin).
func (u *Users) Client(n uint64) *http.Client { return u.clients[n%uint64(len(u.clients))] }

// Zipf draws item ranks (0 is the most popular) with Zipf popularity:
// P(k) ∝ 1/(k+1)^s. It is deterministic for a seed and safe for concurrent
// use.
type Zipf struct {
	mu sync.Mutex
	z  *rand.Zipf
	n  int
	s  float64
}

// NewZipf returns a Zipf distribution over n items (n ≥ 1) with exponent s
// (s > 1; 1.1 is a common fit for web popularity), seeded with seed.
func NewZipf(n int, s float64, seed uint64) (*Zipf, error) {
	if n < 1 {
		return nil, fmt.Errorf("zipf: need at least 1 item, got %d", n)
	}
	if !(s > 1) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("zipf: exponent must be above 1, got %g", s)
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &Zipf{z: rand.NewZipf(r, s, 1, uint64(n-1)), n: n, s: s}, nil
}

// Next draws an item rank in [0, n).
func (z *Zipf) Next() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return int(z.z.Uint64())
}

// Share returns the expected share of draws that pick rank k.
func (z *Zipf) Share(k int) float64 {
	if k < 0 || k >= z.n {
		return 0
	}
	h := 0.0
	for i := 1; i <= z.n; i++ {
		h += math.Pow(float64(i), -z.s)
	}
	return math.Pow(float64(k+1), -z.s) / h
}

// Browse is a journey of logged-in users reading items (course pages, say),
// each request one GET of an item drawn by popularity.
type Browse struct {
	// BaseURL is the site, e.g. "https://127.0.0.1:8443".
	BaseURL string
	// Users are the logged-in users; request n goes out as user n mod Len.
	Users *Users
	// Items draws which item a request reads.
	Items *Zipf
	// Path returns the path of item k, e.g. "/courses/42".
	Path func(k int) string
	// Accept, if set, checks a 2xx/3xx response body; an error makes the
	// request count as rejected. Default: any body.
	Accept func(status int, body []byte) error
}

// Step performs request n: one GET of a popular item as the next user.
func (b *Browse) Step(ctx context.Context, n uint64) Outcome {
	path := b.Path(b.Items.Next())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(b.BaseURL, "/")+path, nil)
	if err != nil {
		return Outcome{Err: err}
	}
	resp, err := b.Users.Client(n).Do(req)
	if err != nil {
		return Outcome{Err: fmt.Errorf("get %s: %w", path, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return Outcome{Status: resp.StatusCode, Err: fmt.Errorf("read %s: %w", path, err)}
	}
	if resp.StatusCode >= 400 {
		return Outcome{Status: resp.StatusCode, Err: fmt.Errorf("get %s: %s", path, resp.Status)}
	}
	if b.Accept != nil {
		if err := b.Accept(resp.StatusCode, body); err != nil {
			return Outcome{Status: resp.StatusCode, Err: fmt.Errorf("get %s: %w", path, err)}
		}
	}
	return Outcome{Status: resp.StatusCode}
}
