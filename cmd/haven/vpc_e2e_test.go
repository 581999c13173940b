package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/testkit"
	"github.com/haven-platform/haven/internal/vpc"
)

// floodEnv makes this test binary a flooder (see TestMain): it opens TCP
// connections to each address in the variable (comma-separated), from 20
// goroutines, closing each at once, until killed; it prints how many it
// opened, and how many were refused, every 200 ms.
const floodEnv = "HAVEN_TEST_FLOOD"

func TestMain(m *testing.M) {
	if targets := os.Getenv(floodEnv); targets != "" {
		flood(strings.Split(targets, ","))
		return
	}
	os.Exit(m.Run())
}

func flood(targets []string) {
	var opened, refused atomic.Int64
	for g := range 20 {
		go func() {
			d := net.Dialer{Timeout: 2 * time.Second}
			for i := g; ; i++ {
				c, err := d.Dial("tcp", targets[i%len(targets)])
				if err != nil {
					if errors.Is(err, syscall.ECONNREFUSED) {
						refused.Add(1)
					}
					continue
				}
				opened.Add(1)
				c.Close()
			}
		}()
	}
	for range time.Tick(200 * time.Millisecond) {
		fmt.Printf("%d %d\n", opened.Load(), refused.Load())
	}
}

// TestVPCBoundaries brings up a Multi-AZ region in its VPC (CI runs as
// root) and proves issue 11's acceptance: each refused path and each
// allowed one, every instance's metadata at 169.254.169.254 and nobody
// else's, the real aws CLI with no endpoint variable for the metadata,
// `haven status` with each instance's address and subnet, a flood of a
// non-root user against an instance's metadata that does not delay the
// instance's own token requests, the zone CLI, and `haven down` leaving no
// namespace, veth, bridge, nftables table or lease.
func TestVPCBoundaries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: the region builds network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("aws"); err != nil {
		t.Fatal("the aws CLI is required (apt-get install awscli)")
	}
	ctx := testCtx(t, 10*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{MultiAZ: true, Students: 20, Courses: 3})
	st := r.Up(ctx)
	if st.Network.Mode != "vpc" {
		t.Fatalf("as root the region has no VPC: %s", st.Network.Why)
	}
	info, err := r.Client.SecretsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := r.Client.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var a, b api.Instance
	for _, in := range st.Instances {
		switch in.Zone {
		case "a":
			a = in
		case "b":
			b = in
		}
	}
	if a.ID == "" || b.ID == "" {
		t.Fatalf("want an instance in each zone, got %+v", st.Instances)
	}
	appPort := strconv.Itoa(r.Ports.App)
	appA, appB := net.JoinHostPort(a.Address, appPort), net.JoinHostPort(b.Address, appPort)
	dbA, dbB := nodeAddress(t, db, "db_a"), nodeAddress(t, db, "db_b")
	run := func(id, script string) string {
		t.Helper()
		res, err := r.Client.RunOnInstance(ctx, id, api.RunRequest{Argv: []string{"sh", "-c", script}})
		if err != nil {
			t.Fatalf("run on %s: %v", id, err)
		}
		return strings.TrimSpace(res.Stdout + res.Stderr)
	}
	// connect tries a TCP connection from inside instance id: curl's exit
	// code says how it went (7: refused, 28: timed out, 52: connected and
	// the server sent nothing, 0: an HTTP answer).
	connect := func(id, addr string) string {
		return run(id, fmt.Sprintf("curl -s -o /dev/null -m 3 http://%s/; echo rc=$?", addr))
	}

	t.Run("status shows each instance's address in its zone's subnet", func(t *testing.T) {
		s := r.StatusJSON(ctx)
		for _, in := range s.Instances {
			var app string
			for _, z := range s.Zones {
				if z.Name == in.Zone {
					app = z.Subnets["app"]
				}
			}
			p, err := netip.ParsePrefix(in.Subnet)
			if err != nil || in.Subnet != app || !p.Contains(netip.MustParseAddr(in.Address)) || !netip.MustParsePrefix(s.Network.Range).Contains(p.Addr()) {
				t.Errorf("instance %s: address %s, subnet %q; want an address in zone %s's app subnet %s of %s", in.ID, in.Address, in.Subnet, in.Zone, app, s.Network.Range)
			}
		}
		out, _, err := r.Haven(ctx, "status")
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range s.Instances {
			if !strings.Contains(out, in.Address) || !strings.Contains(out, in.Subnet) {
				t.Errorf("haven status does not show %s's address %s and subnet %s:\n%s", in.ID, in.Address, in.Subnet, out)
			}
		}
	})

	t.Run("refused and allowed paths", func(t *testing.T) {
		fromHost := func(addr string) string { return dialOutcome(ctx, (&net.Dialer{}).DialContext, addr) }
		fromDB := func(node, addr string) string {
			return dialOutcome(ctx, vpc.NodeNamespace(r.StateDir, node).DialContext, addr)
		}
		for _, c := range []struct{ name, got, want string }{
			{"host to an app instance's port", fromHost(appA), "refused"},
			{"app instance to another instance, other zone", connect(a.ID, appB), "rc=7"},
			{"app instance to another instance's metadata port", connect(a.ID, net.JoinHostPort(b.Address, "80")), "rc=7"},
			{"app instance to a database node's replication port", connect(a.ID, dbA), "rc=7"},
			{"app instance to the other database node", connect(a.ID, dbB), "rc=7"},
			{"database node to an app instance", fromDB("db_a", appA), "refused"},
			{"database node to the other zone's instance", fromDB("db_b", appA), "refused"},
			{"host to a database node", fromHost(dbA), "refused"},
			{"host to the other database node", fromHost(dbB), "refused"},
			// Allowed: replication between the nodes, and the endpoint.
			{"database replication b to a", fromDB("db_b", dbA), "connected"},
			{"host to the database endpoint", fromHost(st.Endpoints.Database), "connected"},
			{"app instance to the database endpoint inside the VPC", connect(a.ID, st.Network.DBEndpoint), "rc=52"},
		} {
			if c.got != c.want {
				t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
			}
		}
		// Through the load balancer, the instances' port works.
		resp, err := httpsClient(t, st.Endpoints.CACert).Get(st.Endpoints.HTTPS + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET /login through the load balancer = %d", resp.StatusCode)
		}
		// The host reaches the database only through its endpoint, where the
		// app's login works.
		login, err := r.Client.DBDrillLogin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Client.DBDrillLogout(context.Background())
		host, port, _ := net.SplitHostPort(login.Endpoint)
		conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable connect_timeout=5", host, port, login.User, login.Password, login.Database))
		if err != nil {
			t.Fatalf("log in through the endpoint from the host: %v", err)
		}
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("SELECT 1 through the endpoint: %v", err)
		}
		conn.Close(ctx)
		// The admin socket: a pathname unix socket, which namespaces do not
		// separate; its directory (0700, postgres) keeps an instance out.
		sock := filepath.Join(r.StateDir, "pg", "db", db.Nodes[0].Name, "run")
		if _, err := os.Stat(filepath.Join(sock, ".s.PGSQL.5432")); err != nil {
			t.Fatalf("the admin socket of %s: %v", db.Nodes[0].Name, err)
		}
		psql := fmt.Sprintf("psql -w -h %s -p 5432 -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; echo rc=$?", sock)
		if uid := processUID(t, a.PID); uid != 0 {
			if out := run(a.ID, psql); out == "rc=0" {
				t.Errorf("app instance %s (uid %d) logged in as postgres over %s's admin socket %s", a.ID, uid, db.Nodes[0].Name, sock)
			}
		} else {
			// Instances still run as root here (issue 9 makes them an
			// unprivileged user, and root passes any directory's mode):
			// what stops an instance is the directory, so try as an
			// unprivileged user inside the instance's namespace.
			t.Logf("instance %s runs as root; the admin socket is tried as user nobody inside its namespace", a.ID)
			cmd := exec.CommandContext(ctx, "psql", "-w", "-h", sock, "-p", "5432", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := vpc.NodeNamespace(r.StateDir, a.ID).Start(cmd); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err == nil || !strings.Contains(out.String(), "ermission denied") {
				t.Errorf("an unprivileged process in instance %s's namespace over %s's admin socket: %v %q, want permission denied", a.ID, db.Nodes[0].Name, err, out.String())
			}
		}
	})

	t.Run("each instance sees its own metadata at 169.254.169.254 and nobody else's", func(t *testing.T) {
		const script = `T=$(curl -s -m 3 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token) || exit 1
for p in instance-id local-ipv4 placement/availability-zone; do curl -s -m 3 -H "X-aws-ec2-metadata-token: $T" http://169.254.169.254/latest/meta-data/$p; echo; done`
		for _, in := range []api.Instance{a, b} {
			got := strings.Fields(run(in.ID, script))
			if len(got) != 3 || got[0] != in.ID || got[1] != in.Address || got[2] != in.AZ {
				t.Errorf("instance %s's metadata says %q, want [%s %s %s]", in.ID, got, in.ID, in.Address, in.AZ)
			}
		}
		// The endpoint identifies by namespace: its own address, not B's, and
		// no variable points anywhere else.
		if pid := a.PID; pid > 0 {
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if strings.Contains(string(env), "AWS_EC2_METADATA_SERVICE_ENDPOINT") {
				t.Errorf("instance %s has AWS_EC2_METADATA_SERVICE_ENDPOINT in its environment; the SDK must find 169.254.169.254 by default", a.ID)
			}
		}
		own := run(a.ID, "set -- http://169.254.169.254 "+info.AppRole+"\n"+imdsCredsScript)
		if !strings.HasSuffix(own, "200") || !strings.Contains(own, `"AccessKeyId"`) {
			t.Errorf("instance %s could not read its role's credentials at 169.254.169.254: %q", a.ID, redact(own))
		}
	})

	t.Run("the aws CLI inside an instance reads the database secret with no metadata endpoint variable", func(t *testing.T) {
		// The instance runs unprivileged: the CLI must be a system-wide one
		// (instanceAWS), given the instance's own Secrets Manager endpoint on
		// its command line (older CLIs ignore AWS_ENDPOINT_URL_SECRETS_MANAGER).
		out := run(a.ID, "env | grep -c AWS_EC2_METADATA_SERVICE_ENDPOINT; "+instanceAWS(t)+
			` --endpoint-url "$AWS_ENDPOINT_URL_SECRETS_MANAGER" secretsmanager get-secret-value --secret-id `+info.DBSecret+" --query VersionStages --output text")
		if lines := strings.Fields(out); len(lines) != 2 || lines[0] != "0" || lines[1] != "AWSCURRENT" {
			t.Fatalf("aws secretsmanager get-secret-value in %s: %q, want no metadata variable and AWSCURRENT", a.ID, out)
		}
	})

	t.Run("a metadata flood by a non-root user does not delay the instance's own token requests", func(t *testing.T) {
		metadataFlood(t, ctx, r, a)
	})

	t.Run("zone faults from the CLI", func(t *testing.T) {
		out, errOut, err := r.Haven(ctx, "zone", "fail", "b", "--fault", "degrade", "--loss", "5")
		if err != nil {
			t.Fatalf("zone fail: %v\n%s%s", err, out, errOut)
		}
		s := r.StatusJSON(ctx)
		for _, z := range s.Zones {
			if z.Name == "b" && z.Fault != "degrade 5% loss" {
				t.Errorf("zone b's fault in status: %q, want degrade 5%% loss", z.Fault)
			}
		}
		if _, errOut, err := r.Haven(ctx, "zone", "fail", "nowhere", "--fault", "power"); err == nil || !strings.Contains(errOut, "no such zone") {
			t.Errorf("zone fail nowhere: %v %q, want an error naming the zones", err, errOut)
		}
		if out, errOut, err := r.Haven(ctx, "zone", "restore", "b"); err != nil {
			t.Fatalf("zone restore: %v\n%s%s", err, out, errOut)
		}
		for _, z := range r.StatusJSON(ctx).Zones {
			if z.Fault != "" || z.Impaired {
				t.Errorf("zone %s after restore: fault %q, impaired %v", z.Name, z.Fault, z.Impaired)
			}
		}
	})

	pids := regionPIDs(r, ctx)
	if _, errOut, err := r.Haven(ctx, "down"); err != nil {
		t.Fatalf("haven down: %v %s", err, errOut)
	}
	assertGone(t, ctx, r, pids)
}

// metadataFlood samples instance in's own token requests (made from
// inside its namespace, as the instance makes them) before, during and
// after a flood by user nobody (uid 65534) from the host, against the
// instance's address (its metadata port and its app port), and from
// inside the instance's namespace, against 169.254.169.254:80: 40
// goroutines opening and closing connections as fast as they can, at
// nice 19.
//
// It asserts that the flood's 90th percentile is within 100 ms of the
// 90th percentile of the samples without it, and that the flood really
// ran (thousands of connections). Why this holds on a loaded 2-core
// machine: the endpoint identifies no caller (the listener is inside the
// namespace: no /proc scan, no serial stage in Accept), so a flood
// connection costs one accept and one goroutine, and the instance's
// request never waits behind another's identification; the host's flood
// is refused by the router and never reaches the namespace; and the
// baseline is measured on the same machine, just before and just after,
// so the background load moves both sides of the comparison. What is
// left is CPU contention between the flooder and the daemon, which is the
// scheduler's business, not the endpoint's: at nice 19 the flooder takes
// the CPU the daemon leaves, and the test asserts it still opened
// thousands of connections.
func metadataFlood(t *testing.T, ctx context.Context, r *testkit.Region, in api.Instance) {
	ns := vpc.NodeNamespace(r.StateDir, in.ID)
	sample := func(n int) []time.Duration {
		var out []time.Duration
		for range n {
			d, err := tokenLatency(ctx, ns)
			if err != nil {
				t.Fatalf("the instance's own token request: %v", err)
			}
			out = append(out, d)
			time.Sleep(50 * time.Millisecond)
		}
		return out
	}
	before := sample(40)
	// A copy of this test binary that user nobody may run.
	dir, err := os.MkdirTemp("", "haven-flood-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := dir + "/flood"
	if data, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(bin, data, 0o755) != nil || os.Chmod(dir, 0o755) != nil {
		t.Fatalf("copy the test binary for the flood: %v", err)
	}
	start := func(run func(*exec.Cmd) error, targets ...string) (*exec.Cmd, *bufio.Scanner) {
		// nice runs it at 19 from its first thread on.
		cmd := exec.Command("nice", "-n", "19", bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), floodEnv+"="+strings.Join(targets, ","))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Setpgid: true, Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := run(cmd); err != nil {
			t.Fatalf("start the flood: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, bufio.NewScanner(out)
	}
	hostFlood, hostOut := start((*exec.Cmd).Start, net.JoinHostPort(in.Address, "80"), net.JoinHostPort(in.Address, strconv.Itoa(r.Ports.App)))
	nsFlood, nsOut := start(ns.Start, "169.254.169.254:80")
	time.Sleep(500 * time.Millisecond)
	during := sample(40)
	hostOpened, hostRefused := lastCounts(t, hostFlood, hostOut)
	nsOpened, _ := lastCounts(t, nsFlood, nsOut)
	after := sample(20)

	base := append(append([]time.Duration(nil), before...), after...)
	p90b, p90f := p90(base), p90(during)
	t.Logf("token latency without flood p50 %v p90 %v max %v; during the flood p50 %v p90 %v max %v; the flood opened %d connections to 169.254.169.254 inside the instance, and from the host %d, %d refused",
		p50(base), p90b, maxOf(base), p50(during), p90f, maxOf(during), nsOpened, hostOpened, hostRefused)
	if nsOpened < 1000 {
		t.Errorf("the flood inside the instance opened only %d connections; it proves nothing", nsOpened)
	}
	if hostOpened != 0 || hostRefused < 1000 {
		t.Errorf("the flood from the host opened %d connections to the instance and was refused %d times; want none opened, thousands refused", hostOpened, hostRefused)
	}
	if p90f > p90b+100*time.Millisecond {
		t.Errorf("the flood delayed the instance's own token requests: p90 %v during, %v without (more than 100 ms)", p90f, p90b)
	}
}

// tokenLatency makes one IMDSv2 token request from inside ns and returns
// how long it took, connection included.
func tokenLatency(ctx context.Context, ns vpc.Namespace) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := ns.DialContext(ctx, "tcp", "169.254.169.254:80")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprint(c, "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if !strings.Contains(line, " 200 ") {
		return 0, fmt.Errorf("token request: %q", strings.TrimSpace(line))
	}
	return time.Since(start), nil
}

// lastCounts reads the flooder's latest "opened refused" line.
func lastCounts(t *testing.T, cmd *exec.Cmd, sc *bufio.Scanner) (opened, refused int64) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && sc.Scan() {
		fmt.Sscan(sc.Text(), &opened, &refused)
	}
	_ = cmd.Process.Kill()
	for sc.Scan() {
		fmt.Sscan(sc.Text(), &opened, &refused)
	}
	return opened, refused
}

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}
func p50(d []time.Duration) time.Duration   { return sorted(d)[len(d)/2] }
func p90(d []time.Duration) time.Duration   { return sorted(d)[len(d)*9/10] }
func maxOf(d []time.Duration) time.Duration { return sorted(d)[len(d)-1] }

// dialOutcome is "connected", "refused", "timeout" or the error.
func dialOutcome(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	switch {
	case err == nil:
		c.Close()
		return "connected"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}

// processUID is the real uid of pid.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

func nodeAddress(t *testing.T, db api.DBStatus, name string) string {
	t.Helper()
	for _, n := range db.Nodes {
		if n.Name == name {
			return n.Address
		}
	}
	t.Fatalf("no database node %s in %+v", name, db.Nodes)
	return ""
}

// TestZoneLossDrill runs `haven drill zone-loss` on a real region, one
// round with each fault: the power of the primary's zone, then a
// partition of the (new) primary's zone.
func TestZoneLossDrill(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: the region builds network namespaces (CI runs as root)")
	}
	ctx := testCtx(t, 12*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{MultiAZ: true, Students: 20, Courses: 3})
	r.Up(ctx)
	for _, fault := range []string{"power", "partition"} {
		out, errOut, err := r.Haven(ctx, "drill", "zone-loss", "--fault", fault, "--rounds", "1", "--json")
		var rep drill.ZoneLossReport
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("%s: drill output: %v (%v)\n%s\n%s\ndaemon log:\n%s", fault, jerr, err, out, errOut, r.Tail("daemon.log"))
		}
		t.Logf("%s: %s", fault, errOut)
		if err != nil || !rep.Pass {
			t.Errorf("zone-loss %s failed: %v %v", fault, err, rep.Reasons)
		}
		if rep.AcknowledgedLost != 0 || rep.FailPresent != 0 || rep.SplitBrainAcks != 0 || rep.Primaries != 1 || !rep.SyncStandbyStreaming {
			t.Errorf("zone-loss %s: lost %d, fail present %d, split-brain acks %d, primaries %d, sync standby %v",
				fault, rep.AcknowledgedLost, rep.FailPresent, rep.SplitBrainAcks, rep.Primaries, rep.SyncStandbyStreaming)
		}
		for _, rd := range rep.RoundResults {
			if !rd.Recovered || !rd.FleetRecovered || !rd.Rebalanced || !rd.Healed || rd.PrimaryAfter == rd.PrimaryBefore {
				t.Errorf("zone-loss %s round %d: recovered %v, fleet back %v, rebalanced %v, healed %v, primary %s → %s",
					fault, rd.Round, rd.Recovered, rd.FleetRecovered, rd.Rebalanced, rd.Healed, rd.PrimaryBefore, rd.PrimaryAfter)
			}
			if fault == "partition" && (rd.SplitBrain == nil || rd.SplitBrain.OK == 0) {
				t.Errorf("zone-loss partition round %d: the writer inside the zone committed nothing before the fault (%+v); the split-brain check proves nothing", rd.Round, rd.SplitBrain)
			}
		}
	}
}
