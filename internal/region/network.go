package region

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/vpc"
	"github.com/haven-platform/haven/internal/zone"
)

// The VPC's fixed nodes: the load balancer (a leg in each zone's public
// subnet) and the Secrets Manager interface endpoint (an address in each
// zone's app subnet).
const (
	lbNode   = "lb"
	vpceNode = "vpce-secrets"
	// releaseNode is where app.release runs: an instance for one task.
	releaseNode = "release"
	// vpcePort is the interface endpoint's port, as on AWS (vpce-sg
	// admits 443). It serves the Secrets Manager API in plain HTTP, as
	// the API does on loopback.
	vpcePort = 443
)

// NetworkEnv is the variable that forces the loopback fallback
// (HAVEN_NETWORK=loopback) even where a VPC could be built: for tests of
// the fallback, and for a machine whose 198.18.0.0/15 is taken.
const NetworkEnv = "HAVEN_NETWORK"

// claimVPC decides the region's network before anything is configured:
// with root, network namespaces and nft, a VPC on the region's own lease
// of 198.18.0.0/15; otherwise loopback ranges, and why (the warning the
// region gives once).
func claimVPC(stateDir string) (netip.Prefix, string, error) {
	if v := os.Getenv(NetworkEnv); v == "loopback" {
		return netip.Prefix{}, "security groups are not enforced: " + NetworkEnv + "=loopback keeps the region on loopback ranges", nil
	} else if v != "" && v != "vpc" {
		return netip.Prefix{}, "", fmt.Errorf("%s=%q: must be vpc (the default where possible) or loopback", NetworkEnv, v)
	}
	if err := vpc.Available(); err != nil {
		return netip.Prefix{}, "security groups are not enforced: " + err.Error() + "; the region runs on loopback ranges", nil
	}
	lease, err := vpc.Claim(stateDir, "")
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("claim an address range for the region's VPC: %w; stop another region (`haven down`) or set %s=loopback", err, NetworkEnv)
	}
	return lease.Prefix, "", nil
}

// startNetwork builds the VPC: the router, the bridges, the host link, the
// security groups, the database endpoint's virtual address; then the load
// balancer's node, the Secrets Manager interface endpoint's node and the
// database nodes. Without a VPC it says once that security groups are not
// enforced.
func (r *Region) startNetwork(ctx context.Context) (err error) {
	n := r.cfg.Network
	if !n.VPC {
		r.warn(r.netWarning)
		return nil
	}
	v, err := vpc.New(vpc.Config{
		Key: r.opts.StateDir, Zones: r.t.zones, Groups: n.Groups, Logger: r.opts.Logger,
		Endpoints: []vpc.EndpointConfig{{Name: secgroup.DBEndpoint, Port: secgroup.PostgresPort}},
	})
	if err != nil {
		return err
	}
	if err := v.Start(ctx); err != nil {
		return err
	}
	r.t.vpc = v
	defer func() {
		if err != nil { // the step did not start: nothing of it may stay
			_ = v.Stop(context.WithoutCancel(ctx))
			r.t.vpc = nil
		}
	}()
	var pub, app []vpc.Attach
	for _, z := range r.t.zones {
		pub = append(pub, vpc.Attach{Zone: z.Name, Tier: zone.Public})
		app = append(app, vpc.Attach{Zone: z.Name, Tier: zone.App})
	}
	if r.t.lbNode, err = v.AddNode(ctx, vpc.NodeSpec{Name: lbNode, Attach: pub, Groups: []string{secgroup.ALB}}); err != nil {
		return err
	}
	if r.t.vpce, err = v.AddNode(ctx, vpc.NodeSpec{Name: vpceNode, Attach: app, Groups: []string{secgroup.VPCE}}); err != nil {
		return err
	}
	r.t.dbNodes = map[string]*vpc.Node{}
	for _, dn := range r.cfg.DB.Nodes {
		node, err := v.AddNode(ctx, vpc.NodeSpec{Name: dn.Name, Attach: []vpc.Attach{{Zone: dn.Zone, Tier: zone.DB}}, Groups: []string{secgroup.DB}})
		if err != nil {
			return err
		}
		if node.Addr() != dn.ListenAddr {
			return fmt.Errorf("database node %s: the VPC gave it %s, not %s as configured", dn.Name, node.Addr(), dn.ListenAddr)
		}
		r.t.dbNodes[dn.Name] = node
	}
	r.say("network: VPC %s, router %s, host link %s; security groups %s enforced by nftables; database endpoint %s inside, %s on the host",
		n.Range, v.Router().Name(), v.HostAddr(), groupNames(n.Groups), n.DBEndpoint, r.spec.Database.Endpoint)
	return nil
}

// stopNetwork removes the VPC: every namespace (killing what still runs in
// one), link, table, and the lease.
func (r *Region) stopNetwork(ctx context.Context) error {
	if r.t.vpc == nil {
		return releaseLease(r.opts.StateDir)
	}
	return r.t.vpc.Stop(ctx)
}

// releaseLease gives up the region's address lease when its VPC was never
// built (a start that failed before).
func releaseLease(stateDir string) error {
	l, ok, err := zone.FindLease("", stateDir)
	if err != nil || !ok {
		return err
	}
	return l.Release()
}

func groupNames(gs []secgroup.Group) string {
	out := ""
	for i, g := range gs {
		if i > 0 {
			out += " → "
		}
		out += g.Name
	}
	return out
}

// unavailable is the error of an action whose tier is not running (yet).
func unavailable(msg string) error {
	return &api.Error{Message: msg, Status: http.StatusServiceUnavailable}
}

// vpceURL is the Secrets Manager interface endpoint's URL in zone z.
func (r *Region) vpceURL(z string) string {
	for _, ifc := range r.t.vpce.Interfaces {
		if ifc.Zone == z {
			return "http://" + net.JoinHostPort(ifc.Addr.String(), strconv.Itoa(vpcePort))
		}
	}
	return ""
}

// serveVPCE opens the interface endpoint's listeners inside its namespace
// and serves the Secrets Manager API there.
func (r *Region) serveVPCE(ctx context.Context) error {
	for _, ifc := range r.t.vpce.Interfaces {
		ln, err := r.t.vpce.Listen(ctx, "tcp", net.JoinHostPort(ifc.Addr.String(), strconv.Itoa(vpcePort)))
		if err != nil {
			return fmt.Errorf("secrets interface endpoint: %w", err)
		}
		if err := r.t.secrets.Serve(ln); err != nil {
			return err
		}
	}
	return nil
}

// instanceNet gives each instance its own node in the VPC: a namespace
// with one address in its zone's app subnet, in app-sg, with its metadata
// endpoint listening inside at 169.254.169.254:80.
type instanceNet struct{ r *Region }

var _ fleet.Network = instanceNet{}

func (n instanceNet) Attach(ctx context.Context, id string, z *zone.Zone) (fleet.Attachment, error) {
	r := n.r
	node, err := r.t.vpc.AddNode(ctx, vpc.NodeSpec{Name: id, Attach: []vpc.Attach{{Zone: z.Name, Tier: zone.App}}, Groups: []string{secgroup.App}, Metadata: true})
	if err != nil {
		return fleet.Attachment{}, err
	}
	if err := r.serveMetadata(ctx, node, id, z.AZ); err != nil {
		_ = r.t.vpc.RemoveNode(context.WithoutCancel(ctx), id)
		return fleet.Attachment{}, err
	}
	return fleet.Attachment{Addr: node.Addr(), Start: node.Start}, nil
}

func (n instanceNet) Detach(ctx context.Context, id string) error {
	return errors.Join(n.r.t.imds.End(ctx, id), n.r.t.vpc.RemoveNode(ctx, id))
}

// serveMetadata starts node's metadata endpoint on a listener opened inside
// its namespace: whoever connects is in that namespace.
func (r *Region) serveMetadata(ctx context.Context, node *vpc.Node, id, az string) error {
	ln, err := node.Listen(ctx, "tcp", net.JoinHostPort(vpc.MetadataAddr.String(), "80"))
	if err != nil {
		return fmt.Errorf("metadata endpoint of %s: %w", id, err)
	}
	_, err = r.t.imds.Serve(ctx, id, az, node.Addr().String(), ln)
	return err
}

// spawnDB starts a database node's server inside its namespace.
func (r *Region) spawnDB(n pgha.Node, cmd *exec.Cmd) error {
	node := r.t.dbNodes[n.Name]
	if node == nil {
		return fmt.Errorf("database node %s has no namespace", n.Name)
	}
	return node.Start(cmd)
}

// zoneFault injects a zone scenario of the failpoint catalogue:
// zone-power, zone-partition, zone-degrade, zone-restore.
func (r *Region) zoneFault(ctx context.Context, in api.FaultRequest) (api.FaultResult, error) {
	v := r.view()
	z := in.Target
	if z == "primary" || z == "" {
		if v.db == nil {
			return api.FaultResult{}, unavailable("the database is not running (yet), so it has no primary zone")
		}
		z = v.db.Primary().Zone
	}
	known := false
	for _, zz := range v.zones {
		known = known || zz.Name == z
	}
	if !known {
		return api.FaultResult{}, fmt.Errorf("zone %q: no such zone; the zones are %v (or \"primary\")", z, r.spec.Zones)
	}
	if v.fleet == nil {
		return api.FaultResult{}, unavailable("the fleet is not running (yet): `haven status` shows the region's phase")
	}
	res := api.FaultResult{Scenario: in.Scenario, Target: z, Zone: z}
	if v.db != nil {
		res.Epoch = int64(v.db.Status().State.Epoch)
	}
	needVPC := func() error {
		if v.vpc == nil {
			return fmt.Errorf("%s: network faults need the region's VPC (root, network namespaces, nft); this region runs on loopback ranges", in.Scenario)
		}
		return nil
	}
	r.zoneMu.Lock()
	defer r.zoneMu.Unlock()
	switch in.Scenario {
	case failpoint.ZonePower:
		if err := v.fleet.ImpairZone(z, true); err != nil {
			return res, err
		}
		if v.db != nil {
			nodes, err := v.db.SetZonePower(z, false)
			if err != nil {
				return res, err
			}
			res.Killed = append(res.Killed, nodes...)
		}
		for _, inst := range v.fleet.Instances() {
			if inst.Zone == z && v.fleet.Signal(inst.ID, syscall.SIGKILL) == nil {
				res.Killed = append(res.Killed, inst.ID)
			}
		}
		r.zoneFaults[z] = "power off"
	case failpoint.ZonePartition:
		if err := needVPC(); err != nil {
			return res, err
		}
		if err := v.vpc.Partition(ctx, z); err != nil {
			return res, err
		}
		if err := v.fleet.ImpairZone(z, true); err != nil {
			return res, err
		}
		r.zoneFaults[z] = "partition"
	case failpoint.ZoneDegrade:
		if err := needVPC(); err != nil {
			return res, err
		}
		loss := in.LossPercent
		if loss == 0 {
			loss = 10
		}
		if err := v.vpc.Degrade(ctx, z, loss); err != nil {
			return res, err
		}
		r.zoneFaults[z] = fmt.Sprintf("degrade %d%% loss", loss)
	case failpoint.ZoneRestore:
		var errs []error
		if v.vpc != nil {
			errs = append(errs, v.vpc.Restore(ctx, z))
		}
		if v.db != nil {
			_, err := v.db.SetZonePower(z, true)
			errs = append(errs, err)
		}
		errs = append(errs, v.fleet.ImpairZone(z, false))
		delete(r.zoneFaults, z)
		if err := errors.Join(errs...); err != nil {
			return res, err
		}
	}
	res.At = time.Now()
	msg := fmt.Sprintf("%s on zone %s", in.Scenario, z)
	if len(res.Killed) > 0 {
		msg += fmt.Sprintf(": SIGKILLed %v", res.Killed)
	}
	r.events.Add("zones", in.Scenario, z, msg)
	r.publishZones()
	return res, nil
}

// publishZones publishes the zones' faults for the status (zoneMu held).
func (r *Region) publishZones() {
	m := make(map[string]string, len(r.zoneFaults))
	for k, v := range r.zoneFaults {
		m[k] = v
	}
	r.zoneView.Store(&m)
}

// zoneFaultOf is zone z's current fault, "" when none.
func (r *Region) zoneFaultOf(z string) string {
	if m := r.zoneView.Load(); m != nil {
		return (*m)[z]
	}
	return ""
}
