package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// emptyPayloadHash is the SHA-256 of an empty body, the payload hash of the
// edge's GET, HEAD and OPTIONS origin requests.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// originConn is one origin: where it is, how to reach it, and how to sign.
type originConn struct {
	id   string
	base *url.URL
	tr   *http.Transport

	// OAC signing; creds is nil when the origin is unsigned.
	creds           aws.CredentialsProvider
	signer          *v4.Signer
	region, service string
}

// target is what a behaviour sends to: one origin, or an origin group.
type target struct {
	id        string
	primary   *originConn
	secondary *originConn // nil without failover
	failover  map[int]bool
	// failingOver is set while requests go to the secondary, so events
	// report the change, not every request.
	failingOver atomic.Bool
}

func newOriginConn(o Origin, cfg Config) *originConn {
	base, _ := parseOriginURL(o.URL) // validated
	attempts, timeout := cfg.ConnectionAttempts, cfg.ConnectionTimeout
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var err error
		for i := 0; i < attempts; i++ {
			d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
			var c net.Conn
			if c, err = d.DialContext(ctx, network, addr); err == nil {
				return c, nil
			}
			if ctx.Err() != nil {
				break
			}
		}
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       o.TLS.Clone(),
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: cfg.ResponseTimeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // the edge forwards Accept-Encoding itself
	}
	oc := &originConn{id: o.ID, base: base, tr: tr}
	if o.OAC != nil {
		oc.creds = aws.NewCredentialsCache(o.OAC.Credentials)
		oc.signer = v4.NewSigner()
		oc.region, oc.service = o.OAC.Region, o.OAC.Service
		if oc.service == "" {
			oc.service = "s3"
		}
	}
	return oc
}

// url is the origin URL of a request path and raw query: the origin's base
// path followed by the viewer's path.
func (o *originConn) url(rawPath, rawQuery string) *url.URL {
	u := *o.base
	u.RawQuery = rawQuery
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		p = rawPath
	}
	u.Path = o.base.Path + p
	u.RawPath = o.base.EscapedPath() + rawPath // used when it is a valid encoding of Path
	return &u
}

// sign adds an OAC SigV4 signature. SigV4 dates use the wall clock: the
// origin checks them against its own.
func (o *originConn) sign(ctx context.Context, r *http.Request) error {
	for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256"} {
		r.Header.Del(h)
	}
	creds, err := o.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve OAC credentials for origin %s: %w", o.id, err)
	}
	payload := emptyPayloadHash
	if r.Body != nil && r.Body != http.NoBody {
		payload = "UNSIGNED-PAYLOAD"
	}
	r.Header.Set("X-Amz-Content-Sha256", payload)
	// S3 signs the path as sent, without escaping it again, as the SDK's S3
	// client does.
	noEscape := func(so *v4.SignerOptions) { so.DisableURIPathEscaping = o.service == "s3" }
	if err := o.signer.SignHTTP(ctx, creds, r, payload, o.service, o.region, time.Now(), noEscape); err != nil {
		return fmt.Errorf("sign request to origin %s: %w", o.id, err)
	}
	return nil
}

// originRequest is what the edge asks of a target, independent of which
// origin answers.
type originRequest struct {
	method   string
	rawPath  string
	rawQuery string
	header   http.Header
	// host is the Host header to send; "" sends the origin's own host.
	host string
	body io.ReadCloser
	// contentLength is the body's length, -1 if unknown.
	contentLength int64
}

// failoverMethod reports whether CloudFront fails a request over to an
// origin group's secondary: GET, HEAD and OPTIONS only.
func failoverMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// errOriginTimeout marks an origin that did not answer in time (504).
var errOriginTimeout = errors.New("origin timed out")

// roundTrip sends or to t's primary origin and, for GET, HEAD and OPTIONS,
// fails over to its secondary when the primary cannot be reached, times out
// or answers with a failover status code. It never retries once a response
// has been handed back.
func (e *Edge) roundTrip(ctx context.Context, t *target, or *originRequest) (*http.Response, error) {
	resp, err := e.attempt(ctx, t.primary, or)
	if t.secondary == nil || !failoverMethod(or.method) || ctx.Err() != nil {
		return resp, err
	}
	if err == nil && !t.failover[resp.StatusCode] {
		if t.failingOver.CompareAndSwap(true, false) {
			e.log.Info("origin recovered", "target", t.id, "origin", t.primary.id)
			e.emit(Event{Kind: EventRecovered, Subject: t.id, Message: fmt.Sprintf("origin %s of %s answers again", t.primary.id, t.id),
				Attrs: map[string]any{"origin": t.primary.id}})
		}
		return resp, nil
	}
	reason := ""
	if err == nil {
		reason = fmt.Sprintf("status %d", resp.StatusCode)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	} else {
		reason = err.Error()
	}
	if t.failingOver.CompareAndSwap(false, true) {
		e.log.Info("origin failover", "target", t.id, "from", t.primary.id, "to", t.secondary.id, "reason", reason)
		e.emit(Event{Kind: EventFailover, Subject: t.id, Message: fmt.Sprintf("%s fails over from %s to %s: %s", t.id, t.primary.id, t.secondary.id, reason),
			Attrs: map[string]any{"from": t.primary.id, "to": t.secondary.id, "reason": reason}})
	}
	e.stats.failovers.Add(1)
	return e.attempt(ctx, t.secondary, or)
}

func (e *Edge) attempt(ctx context.Context, o *originConn, or *originRequest) (*http.Response, error) {
	req := &http.Request{
		Method:        or.method,
		URL:           o.url(or.rawPath, or.rawQuery),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        or.header.Clone(),
		Host:          or.host,
		Body:          or.body,
		ContentLength: or.contentLength,
	}
	if req.Body == nil {
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	req = req.WithContext(ctx)
	if o.creds != nil {
		if err := o.sign(ctx, req); err != nil {
			return nil, err
		}
	}
	e.stats.originRequests.Add(1)
	resp, err := o.tr.RoundTrip(req)
	if err != nil {
		e.stats.originErrors.Add(1)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("request origin %s: %w: %v", o.id, errOriginTimeout, err)
		}
		return nil, fmt.Errorf("request origin %s: %w", o.id, err)
	}
	if resp.StatusCode >= 500 {
		e.stats.originErrors.Add(1)
	}
	return resp, nil
}
