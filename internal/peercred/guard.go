package peercred

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Defaults of Guard's bounds.
const (
	// DefaultConcurrency is how many connections are identified at once.
	DefaultConcurrency = 4
	// DefaultPeerRate and DefaultPeerBurst bound the identifications per
	// second of one peer user: a token bucket per uid.
	DefaultPeerRate  = 20.0
	DefaultPeerBurst = 40
	// DefaultLogEvery is the least time between two logged refusals of one
	// peer user; those in between are counted and reported with the next.
	DefaultLogEvery = 10 * time.Second
)

// Guard is a listener that hands out only connections whose every peer
// process passes Allow; the others get a 403 and are closed. It identifies
// callers by /proc, which works without network namespaces (a region's
// loopback fallback); in a VPC, the namespace a connection comes from
// identifies the caller instead, and no Guard is needed.
//
// Identifying a caller scans every process's file descriptors, so it is
// bounded, that no local user can flood a metadata endpoint until its own
// instance's requests wait (issue 9): connections are identified
// concurrently (Concurrency at a time), never inside Accept; each peer
// user (the uid owning the client socket, one sock_diag lookup) gets
// at most PeerRate identifications per second (burst PeerBurst), beyond
// which its connections are refused at once without a scan; and refusals
// are logged at most once per LogEvery per peer user, with a count of
// those not logged.
type Guard struct {
	net.Listener
	// Allow returns nil when process pid may call. Required.
	Allow func(pid int) error
	// Candidates, when set, lists the only processes that may call (an
	// instance's process group): the connection's socket is looked for
	// among their files alone, which costs a few directory reads instead of
	// a scan of every process. When it returns nil (the instance's process
	// is not known yet), every process is scanned. Default nil: every
	// process is scanned.
	Candidates func() []int
	// Log receives refusals. Required.
	Log *slog.Logger
	// Concurrency is how many connections are identified at once.
	// Default DefaultConcurrency.
	Concurrency int
	// PeerRate and PeerBurst bound one peer user's identifications.
	// Default DefaultPeerRate and DefaultPeerBurst.
	PeerRate  float64
	PeerBurst int
	// LogEvery is the least time between two logged refusals of one peer
	// user. Default DefaultLogEvery.
	LogEvery time.Duration
	// Now is the clock of the rate limit and the log sampling. Default time.Now.
	Now func() time.Time

	once  sync.Once
	ready chan net.Conn
	done  chan struct{}
	err   error
	slots chan struct{}

	mu    sync.Mutex
	peers map[int]*peerState
}

// peerState is one peer user's token bucket and log sampling.
type peerState struct {
	tokens     float64
	last       time.Time
	logged     time.Time
	suppressed int
}

// Accept returns the next allowed connection.
func (g *Guard) Accept() (net.Conn, error) {
	g.once.Do(g.init)
	select {
	case c := <-g.ready:
		return c, nil
	case <-g.done:
		// Connections identified before the listener closed still count.
		select {
		case c := <-g.ready:
			return c, nil
		default:
		}
		return nil, g.err
	}
}

func (g *Guard) init() {
	if g.Concurrency <= 0 {
		g.Concurrency = DefaultConcurrency
	}
	if g.PeerRate <= 0 {
		g.PeerRate = DefaultPeerRate
	}
	if g.PeerBurst <= 0 {
		g.PeerBurst = DefaultPeerBurst
	}
	if g.LogEvery <= 0 {
		g.LogEvery = DefaultLogEvery
	}
	if g.Now == nil {
		g.Now = time.Now
	}
	g.ready = make(chan net.Conn)
	g.done = make(chan struct{})
	g.slots = make(chan struct{}, g.Concurrency)
	g.peers = map[int]*peerState{}
	go g.loop()
}

// loop accepts connections and identifies each in its own goroutine, at
// most Concurrency at a time; Accept never waits on a scan.
func (g *Guard) loop() {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			g.err = err
			close(g.done)
			return
		}
		uid, uerr := peerUID(c)
		if uerr == nil && !g.take(uid) {
			g.refuse(c, uid, errors.New("too many connections from this user: refused without identification"))
			continue
		}
		go g.identify(c, uid)
	}
}

func (g *Guard) identify(c net.Conn, uid int) {
	select {
	case g.slots <- struct{}{}:
	case <-g.done:
		c.Close()
		return
	}
	err := g.check(c)
	<-g.slots
	if err != nil {
		g.refuse(c, uid, err)
		return
	}
	select {
	case g.ready <- c:
	case <-g.done:
		c.Close()
	}
}

// take spends one of uid's tokens, reporting whether it had one.
func (g *Guard) take(uid int) bool {
	now := g.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peers[uid]
	if p == nil {
		p = &peerState{tokens: float64(g.PeerBurst), last: now}
		g.peers[uid] = p
	}
	p.tokens = min(float64(g.PeerBurst), p.tokens+now.Sub(p.last).Seconds()*g.PeerRate)
	p.last = now
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// refuse answers 403, closes c and logs the refusal, sampled per peer user.
func (g *Guard) refuse(c net.Conn, uid int, why error) {
	now := g.Now()
	g.mu.Lock()
	p := g.peers[uid]
	if p == nil {
		p = &peerState{tokens: float64(g.PeerBurst), last: now}
		g.peers[uid] = p
	}
	log, suppressed := now.Sub(p.logged) >= g.LogEvery || p.logged.IsZero(), p.suppressed
	if log {
		p.logged, p.suppressed = now, 0
	} else {
		p.suppressed++
	}
	g.mu.Unlock()
	if log {
		g.Log.Warn("request refused", "peer", c.RemoteAddr().String(), "peer_uid", uid, "reason", why.Error(), "refusals_not_logged", suppressed)
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	msg := "this endpoint serves only its own instance\n"
	_, _ = fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
	_ = c.Close()
}

// peerUID is the user owning c's client socket (-1 when unknown).
func peerUID(c net.Conn) (int, error) {
	peer, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return -1, errors.New("not a TCP connection")
	}
	return SocketUID(peer.AddrPort(), local.AddrPort())
}
