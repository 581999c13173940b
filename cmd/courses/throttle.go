package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Login throttling.
//
// Every password check is counted before bcrypt runs, in the login_throttle
// table, so the limits hold across the whole fleet (the load balancer spreads
// one attacker over every instance) and across restarts. Two counters are
// kept, each in a fixed window (ThrottlePolicy.Window, 15 min by default):
//
//   - per account: keyed by the SHA-256 of the normalised email, whether or
//     not such a user exists, so a refusal says nothing about which accounts
//     exist. A successful login clears it.
//   - per client: keyed by the client's address (its /64 for IPv6), as
//     ClientIPConfig finds it behind the load balancer. A successful login
//     gives its attempt back, so the counter holds failures (plus attempts in
//     flight): a campus NAT behind which thousands of students log in
//     correctly is never throttled by its own successes.
//
// An attempt over either limit is refused with 429 and Retry-After before the
// password is checked, so a flood of guesses costs one small upsert each, not
// a bcrypt. Counting before the check (and not after a failure) means a burst
// of concurrent guesses cannot all slip in before the first failure is
// recorded.

// Default throttle limits.
const (
	// DefaultAccountLimit is how many password checks one account gets per
	// window before logins to it are paused.
	DefaultAccountLimit = 10
	// DefaultClientLimit is how many failed password checks one client
	// address gets per window. It is high because a campus NAT puts many
	// students behind one address.
	DefaultClientLimit = 100
	// DefaultThrottleWindow is the length of a throttle window.
	DefaultThrottleWindow = 15 * time.Minute
	// throttleSweep is how many expired rows one login attempt deletes.
	throttleSweep = 50
)

// Throttle scopes, as stored in login_throttle.scope.
const (
	scopeAccount = "account"
	scopeClient  = "client"
)

// ThrottlePolicy is the login rate limit.
type ThrottlePolicy struct {
	// AccountLimit is the number of password checks per account per window
	// (failed ones, or in flight). Default 10.
	AccountLimit int
	// ClientLimit is the number of failed password checks per client address
	// per window. Default 100.
	ClientLimit int
	// Window is the fixed window the counters live in. Default 15m.
	Window time.Duration
}

func (p *ThrottlePolicy) setDefaults() {
	if p.AccountLimit == 0 {
		p.AccountLimit = DefaultAccountLimit
	}
	if p.ClientLimit == 0 {
		p.ClientLimit = DefaultClientLimit
	}
	if p.Window == 0 {
		p.Window = DefaultThrottleWindow
	}
}

// Validate checks the policy (after defaults).
func (p ThrottlePolicy) Validate() error {
	if p.AccountLimit < 1 {
		return fmt.Errorf("--login-account-limit: must be ≥ 1, got %d", p.AccountLimit)
	}
	if p.ClientLimit < 1 {
		return fmt.Errorf("--login-client-limit: must be ≥ 1, got %d", p.ClientLimit)
	}
	if p.Window < time.Second {
		return fmt.Errorf("--login-window: must be ≥ 1s, got %s", p.Window)
	}
	return nil
}

// throttleCount is one counter after this attempt was added to it.
type throttleCount struct {
	Attempts    int
	WindowStart time.Time
}

// throttleVerdict is what decide says about one login attempt.
type throttleVerdict struct {
	// Allowed means the password may be checked.
	Allowed bool
	// Scope is the counter that refused (scopeAccount or scopeClient).
	Scope string
	// RetryAfter is how long until the refusing window ends.
	RetryAfter time.Duration
}

// decide says whether an attempt may go on to the password check, given both
// counters with this attempt included. It is pure. When both refuse, the one
// that ends later is reported, so the user is not told to retry too early.
func (p ThrottlePolicy) decide(now time.Time, account, client throttleCount) throttleVerdict {
	v := throttleVerdict{Allowed: true}
	check := func(scope string, c throttleCount, limit int) {
		if c.Attempts <= limit {
			return
		}
		wait := max(c.WindowStart.Add(p.Window).Sub(now), time.Second)
		if v.Allowed || wait > v.RetryAfter {
			v = throttleVerdict{Scope: scope, RetryAfter: wait}
		}
	}
	check(scopeAccount, account, p.AccountLimit)
	check(scopeClient, client, p.ClientLimit)
	return v
}

// throttleMessage is the user-facing text for a refusal: what happened, why,
// and what to do.
func throttleMessage(v throttleVerdict) string {
	mins := int((v.RetryAfter + time.Minute - 1) / time.Minute)
	wait := "1 minute"
	if mins > 1 {
		wait = fmt.Sprintf("%d minutes", mins)
	}
	if v.Scope == scopeAccount {
		return "Too many failed logins for this account: logging in to it is paused for " + wait +
			" to protect it from password guessing. Try again then; if you have forgotten your password, ask the helpdesk."
	}
	return "Too many failed logins from your network: logins from it are paused for " + wait +
		" to protect everyone's accounts. Try again then, or from another network."
}

// accountKey is the account counter's key: the SHA-256 of the normalised
// email, so the table holds no email addresses, and its key size is fixed
// whatever the client sends.
func accountKey(email string) string {
	h := sha256.Sum256([]byte(normEmail(email)))
	return hex.EncodeToString(h[:])
}

// normEmail is the form emails are stored and compared in.
func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// loginReservation is a counted login attempt, released on success.
type loginReservation struct {
	AccountKey, ClientKey string
	ClientWindow          time.Time
}

// ReserveLogin counts one login attempt against both counters and says
// whether it may go on to the password check. It also deletes a few expired
// counters, so the table stays bounded without a background job.
func (s *Store) ReserveLogin(ctx context.Context, p ThrottlePolicy, email, client string) (loginReservation, throttleVerdict, error) {
	res := loginReservation{AccountKey: accountKey(email), ClientKey: client}
	now := s.clock.Now()
	var acct, cli throttleCount
	// Idempotent enough: a retry after an unknown COMMIT counts the attempt
	// twice, which only errs on the side of caution.
	err := s.db.WriteIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// The account row is always locked before the client row, so two
		// attempts never wait on each other in opposite orders.
		rows, err := tx.Query(ctx, `INSERT INTO login_throttle AS t (scope, key, attempts, window_start)
			VALUES ($1, $2, 1, $5), ($3, $4, 1, $5)
			ON CONFLICT (scope, key) DO UPDATE SET
				attempts = CASE WHEN t.window_start <= $5::timestamptz - $6::interval THEN 1 ELSE t.attempts + 1 END,
				window_start = CASE WHEN t.window_start <= $5::timestamptz - $6::interval THEN $5 ELSE t.window_start END
			RETURNING scope, attempts, window_start`,
			scopeAccount, res.AccountKey, scopeClient, res.ClientKey, now, p.Window)
		if err != nil {
			return err
		}
		for rows.Next() {
			var scope string
			var c throttleCount
			if err := rows.Scan(&scope, &c.Attempts, &c.WindowStart); err != nil {
				return err
			}
			if scope == scopeAccount {
				acct = c
			} else {
				cli = c
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// SKIP LOCKED: never wait for (or deadlock with) a concurrent login.
		_, err = tx.Exec(ctx, `DELETE FROM login_throttle WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM login_throttle WHERE window_start < $1::timestamptz - $2::interval
			LIMIT $3 FOR UPDATE SKIP LOCKED))`, now, p.Window, throttleSweep)
		return err
	})
	if err != nil {
		return res, throttleVerdict{}, fmt.Errorf("count login attempt: %w", err)
	}
	res.ClientWindow = cli.WindowStart
	return res, p.decide(now, acct, cli), nil
}

// releaseLogin clears the account counter and gives the client its attempt
// back after a successful login. It runs inside the session's transaction.
// A retried transaction may give back two attempts; attempts never go below 0.
func releaseLogin(ctx context.Context, tx pgx.Tx, r *loginReservation) error {
	if _, err := tx.Exec(ctx, `DELETE FROM login_throttle WHERE scope = $1 AND key = $2`, scopeAccount, r.AccountKey); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE login_throttle SET attempts = attempts - 1
		WHERE scope = $1 AND key = $2 AND window_start = $3 AND attempts > 0`, scopeClient, r.ClientKey, r.ClientWindow)
	return err
}

// ---- the client's address behind the load balancer ----

// defaultTrustedProxies are the peers whose X-Forwarded-For is believed:
// loopback, the private ranges a VPC (and so the ALB) uses, carrier-grade
// NAT space, and haven's 198.18.0.0/15.
var defaultTrustedProxies = []string{
	"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"100.64.0.0/10", "198.18.0.0/15", "fc00::/7",
}

// ClientIPConfig says how to find the client's address behind proxies.
//
// The load balancer (haven's or an ALB) appends the address it accepted the
// connection from to X-Forwarded-For, after whatever the client sent. Only
// the entries appended by our own proxies can be believed: everything to
// their left is whatever the client chose to write. So the client is the
// Hops-th entry from the right, and X-Forwarded-For is read at all only when
// the connection comes from a trusted proxy address. A client that talks to
// the app directly (bypassing the load balancer, where security groups allow
// it) is identified by its own connection.
type ClientIPConfig struct {
	// TrustedProxies are the peer networks allowed to set X-Forwarded-For.
	// Default: loopback, RFC 1918, 100.64.0.0/10, 198.18.0.0/15, fc00::/7.
	TrustedProxies []netip.Prefix
	// Hops is the number of our proxies that append to X-Forwarded-For:
	// 1 for the load balancer alone (default), 2 with the edge (CloudFront)
	// in front of it. 0 ignores the header.
	Hops int
}

// ParseTrustedProxies parses a comma-separated CIDR list.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR such as 10.0.0.0/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c ClientIPConfig) trusted(a netip.Addr) bool {
	for _, p := range c.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the client's address for a request's peer address and
// X-Forwarded-For header values. It is pure.
func (c ClientIPConfig) clientAddr(remoteAddr string, xff []string) netip.Addr {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if c.Hops <= 0 || !c.trusted(peer) {
		return peer
	}
	var entries []string
	for _, h := range xff {
		for _, e := range strings.Split(h, ",") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
	}
	if len(entries) == 0 {
		return peer // straight from a trusted peer: a probe, or a test
	}
	// Fewer entries than hops: the request skipped an outer proxy (say, the
	// edge), so the leftmost entry is the one our first proxy appended.
	i := max(len(entries)-c.Hops, 0)
	a, err := netip.ParseAddr(entries[i])
	if err != nil {
		// Our proxies write bare addresses; anything else did not come
		// from them.
		return peer
	}
	return a.Unmap()
}

// clientKey is the per-client counter's key: the address, or its /64 for
// IPv6, since one subscriber usually holds a whole /64.
func clientKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// clientOf is the throttle key of the request's client.
func (s *Server) clientOf(r *http.Request) string {
	return clientKey(s.clientIP.clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For")))
}

// errThrottled is returned by checkPassword when the attempt was refused.
var errThrottled = errors.New("login throttled")
