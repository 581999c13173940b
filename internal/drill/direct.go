package drill

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/vpc"
)

// nodes reaches database nodes directly, to ask each whether it accepts
// writes and to read the ledger on the primary: the drills' own checks, not
// the apps' path. In a region's VPC the host cannot reach a node (only its
// endpoint), so the drill connects from inside the node's own namespace,
// as `ip netns exec` would, which needs root as the VPC does; on loopback
// ranges it dials the node's address.
type nodes struct {
	stateDir string
	vpc      bool
}

// directNodes says how the region's database nodes are reached directly.
func directNodes(st api.Status) (nodes, error) {
	n := nodes{stateDir: st.StateDir, vpc: st.Network.Mode == "vpc"}
	if n.vpc && os.Geteuid() != 0 {
		return n, fmt.Errorf("the region's database nodes are in network namespaces; the drill checks them from inside, which needs root (run the drill as root, as the region is)")
	}
	return n, nil
}

// dial returns the dial function that reaches node directly (nil: a plain dial).
func (n nodes) dial(node string) pgconn.DialFunc {
	if !n.vpc {
		return nil
	}
	ns := vpc.NodeNamespace(n.stateDir, node)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.DialContext(ctx, network, addr)
	}
}

// connect opens a connection to node at addr as the drill login.
func (n nodes) connect(ctx context.Context, login api.DBDrillLogin, node, addr string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(nodeDSN(login, addr))
	if err != nil {
		return nil, err
	}
	if d := n.dial(node); d != nil {
		cfg.DialFunc = d
	}
	return pgx.ConnectConfig(ctx, cfg)
}
