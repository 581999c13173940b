package region

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/edge"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/imds"
	"github.com/haven-platform/haven/internal/objstore"
	"github.com/haven-platform/haven/internal/pgha/endpoint"
	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/vpc"
	"github.com/haven-platform/haven/internal/zone"
)

// storageTiers are the object store and the edge while they run.
type storageTiers struct {
	// registrar issues instance and edge credentials and registers them
	// with the store, which runs in its own process.
	registrar *objstore.Registrar
	store     *objstore.Process
	watcher   *objstore.Watcher
	// releaseMD serves the release task's metadata, with the release role.
	releaseMD *imds.Endpoints
	// s3Node is the store's interface endpoint in the VPC (nil on
	// loopback): an address in each zone's app subnet, in vpce-sg, where
	// relay forwarded to the store on the host, in the daemon (unused:
	// relays replaced it); relays are the interface endpoint's relay
	// processes, one per zone, which outlive the daemon.
	s3Node *vpc.Node
	relay  *objstore.Relay
	relays []*endpoint.ProxyProcess
	// keyID is the signing key pair's ID, keyPEM its public half, keyARN
	// the secret that holds its private key.
	keyID  string
	keyPEM []byte
	keyARN string
	// s3Up is set once the store runs: the app role's S3 statements then
	// belong in its policies.
	s3Up bool
	edge *edge.Edge
}

// registrarIssuer lets the metadata endpoints issue through the registrar,
// so every instance credential is also registered with the store, and an
// instance's end revokes its credentials in both.
type registrarIssuer struct{ r *objstore.Registrar }

func (ri registrarIssuer) Issue(role, instanceID string) (iam.Credentials, error) {
	return ri.r.Issue(role, instanceID)
}

func (ri registrarIssuer) RevokeInstance(instanceID string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := ri.r.RevokeInstance(ctx, instanceID)
	if err != nil {
		ri.r.Logger.Warn("revoke an instance's credentials in the object store", "component", "region", "instance", instanceID, "err", err)
	}
	return n
}

// newRegistrar is the credential issuer the metadata endpoints use. The
// store need not run yet: what it misses is registered by Resync.
func (r *Region) newRegistrar(issuer *iam.Issuer) registrarIssuer {
	// The SDK's IMDS client waits 500ms for an answer: a slow store must
	// not make the metadata endpoint slower than that (what it has not
	// confirmed by then is registered in the background).
	r.t.st.registrar = &objstore.Registrar{Issuer: issuer, Store: objstore.NewClient(r.cfg.Storage.ObjStore.Dir),
		Timeout: 300 * time.Millisecond, Logger: r.opts.Logger}
	return registrarIssuer{r.t.st.registrar}
}

// startObjStore writes the store's configuration, adopts the store a
// previous daemon left serving (reloading its configuration) or starts
// one, registers every live credential with it, and gives the app and
// release roles their S3 statements in the region's IAM policies.
func (r *Region) startObjStore(ctx context.Context) error {
	c := r.cfg.Storage
	// The app role's S3 statements are derived with the rest of its
	// policies (derive, on start and on every apply); the other roles'
	// are set here.
	for role, ps := range c.ObjStore.Roles {
		if role == r.cfg.AppRole {
			continue
		}
		for _, p := range ps {
			if err := r.t.policies.Attach(role, p); err != nil {
				return err
			}
		}
	}
	// The release task reads the database secret like an instance, and
	// writes what its S3 statements allow.
	if err := r.t.policies.Attach(c.ReleaseRole, iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
		Sid: "ReadOwnDBSecret", Effect: iam.Allow,
		Action:   iam.StringList{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
		Resource: iam.StringList{r.t.cred.ARN()},
	}}}); err != nil {
		return err
	}
	if err := objstore.WriteConfig(c.ObjStore.Dir, c.ObjStore); err != nil {
		return err
	}
	p := &objstore.Process{Dir: c.ObjStore.Dir, Logger: r.opts.Logger}
	r.t.st.store = p
	adopted, err := p.Adopt(ctx)
	if err != nil {
		r.log.Warn("object store left by a previous daemon does not answer; replacing it", "err", err)
		if err := p.Stop(ctx); err != nil {
			return fmt.Errorf("replace object store: %w", err)
		}
	}
	if adopted {
		// The spec may have changed; a new listen address needs a restart.
		if err := p.Client().Reload(ctx); err != nil {
			r.log.Warn("object store refused its new configuration; restarting it", "err", err)
			if err := p.Stop(ctx); err != nil {
				return fmt.Errorf("restart object store: %w", err)
			}
			adopted = false
		}
	}
	if !adopted {
		if err := p.Start(ctx); err != nil {
			return fmt.Errorf("%w (set objstore.listen to a free address)", err)
		}
	}
	if err := r.t.st.registrar.Resync(ctx); err != nil {
		return fmt.Errorf("register credentials with the object store: %w", err)
	}
	r.t.st.watcher = &objstore.Watcher{Client: p.Client(), Logger: r.opts.Logger, OnEvent: func(e objstore.WatchEvent) {
		r.events.Add("objstore", e.Kind, "", e.Message)
	}}
	if err := r.t.st.watcher.Start(ctx); err != nil {
		return err
	}
	r.t.st.releaseMD = imds.NewEndpoints(imds.EndpointsConfig{Region: r.spec.AWS.Region, Role: c.ReleaseRole, Account: r.t.issuer.Account(),
		Issuer: registrarIssuer{r.t.st.registrar}, Logger: r.opts.Logger})
	if err := r.startS3Endpoint(ctx); err != nil {
		return err
	}
	r.t.st.s3Up = true
	if err := r.derive(ctx, &r.t, r.cfg); err != nil {
		return err
	}
	verb := "started"
	if adopted {
		verb = "adopted"
	}
	r.say("object store: %s S3 endpoint %s (pid %d), buckets %v, data in %s", verb, c.S3Endpoint, p.PID(), bucketNames(r.spec), c.ObjStore.Dir)
	return nil
}

func bucketNames(s spec.Spec) []string {
	var out []string
	for _, b := range s.ObjStore.Buckets {
		out = append(out, b.Name)
	}
	return out
}

// s3NodeName is the store's interface endpoint's node in the VPC.
const s3NodeName = "vpce-s3"

// startS3Endpoint gives the instances in the VPC their way to the store:
// an interface endpoint node in each zone's app subnet, in vpce-sg (which
// app-sg reaches on 443, as for Secrets Manager), whose listeners relay to
// the store's address on the host. On loopback ranges the instances reach
// the store's own address.
func (r *Region) startS3Endpoint(ctx context.Context) error {
	if r.t.vpc == nil {
		return nil
	}
	var app []vpc.Attach
	for _, z := range r.t.zones {
		app = append(app, vpc.Attach{Zone: z.Name, Tier: zone.App})
	}
	// A VPC an earlier daemon left running has the node already: it is
	// taken as it is (its listeners went with that daemon).
	node, ok := r.t.vpc.Node(s3NodeName)
	if !ok {
		var err error
		if node, err = r.t.vpc.AddNode(ctx, vpc.NodeSpec{Name: s3NodeName, Attach: app, Groups: []string{secgroup.VPCE}}); err != nil {
			return fmt.Errorf("the object store's interface endpoint: %w", err)
		}
	}
	r.t.st.s3Node = node
	// Each zone's listener is served by a relay process of its own (`haven
	// endpoint serve`, forwarding to the store's address on the host), so
	// the instances' path to the store outlives the daemon as the store
	// does; the next daemon adopts the processes, cutting nothing.
	for _, ifc := range node.Interfaces {
		pp, err := endpoint.NewProcess(endpoint.ProcessConfig{
			Dir:    filepath.Join(r.opts.StateDir, "s3-relay", ifc.Zone),
			Listen: net.JoinHostPort(ifc.Addr.String(), strconv.Itoa(vpcePort)),
			Bind:   func(ctx context.Context, addr string) (net.Listener, error) { return node.Listen(ctx, "tcp", addr) },
			Logger: r.opts.Logger,
		})
		if err != nil {
			return fmt.Errorf("the object store's interface endpoint: %w", err)
		}
		if err := pp.Start(ctx); err != nil {
			return fmt.Errorf("the object store's interface endpoint in zone %s: %w", ifc.Zone, err)
		}
		r.t.st.relays = append(r.t.st.relays, pp)
		pp.SetTarget(1, r.spec.ObjStore.Listen) // an adopted relay has it already: nothing is cut
	}
	r.say("object store: interface endpoint for the instances at %s (vpce-sg), relayed to %s", r.s3URL(r.t.zones[0].Name), r.cfg.Storage.S3Endpoint)
	return nil
}

// s3URL is the S3 endpoint an instance of zone z uses: the interface
// endpoint's address in that zone in a VPC, the store's own address on
// loopback ranges (or when z is unknown).
func (r *Region) s3URL(z string) string {
	if n := r.t.st.s3Node; n != nil {
		for _, ifc := range n.Interfaces {
			if ifc.Zone == z {
				return "http://" + net.JoinHostPort(ifc.Addr.String(), strconv.Itoa(vpcePort))
			}
		}
	}
	return r.cfg.Storage.S3Endpoint
}

// stopObjStore stops watching and stops the store: `haven down` leaves
// nothing running. (A daemon that dies leaves it serving; the next adopts it.)
func (r *Region) stopObjStore(ctx context.Context) error {
	var errs []error
	if r.t.st.releaseMD != nil {
		errs = append(errs, r.t.st.releaseMD.StopAll(ctx))
	}
	if r.t.st.watcher != nil {
		errs = append(errs, r.t.st.watcher.Stop(ctx))
	}
	r.t.st.registrar.Close()
	for _, pp := range r.t.st.relays {
		errs = append(errs, pp.Stop(ctx))
	}
	if r.t.st.s3Node != nil && r.t.vpc != nil {
		errs = append(errs, r.t.vpc.RemoveNode(ctx, s3NodeName))
	}
	errs = append(errs, r.t.st.store.Stop(ctx))
	return errors.Join(errs...)
}

// detachObjStore lets go of the object store for a daemon that takes
// over (an upgrade): the watcher, the release task's metadata endpoint and
// the registrar stop; the store's process, the interface endpoint's node
// and its relay processes stay, for the next daemon to adopt.
func (r *Region) detachObjStore(ctx context.Context) error {
	var errs []error
	if r.t.st.releaseMD != nil {
		errs = append(errs, r.t.st.releaseMD.StopAll(ctx))
	}
	if r.t.st.watcher != nil {
		errs = append(errs, r.t.st.watcher.Stop(ctx))
	}
	r.t.st.registrar.Close()
	for _, pp := range r.t.st.relays {
		pp.Detach()
	}
	return errors.Join(errs...)
}

// startSigningKey makes the key pair signed URLs are made with, the first
// time, and keeps its private key in the secrets service (never on disk in
// the clear, never in the environment): the app reads it like the database
// secret, with the app role, which may read that one secret. The edge gets
// the public half as its trusted key group.
func (r *Region) startSigningKey(ctx context.Context) error {
	name := r.cfg.Storage.SigningKeySecret
	if name == "" {
		return nil
	}
	store := r.t.secrets.Store()
	cur, err := store.GetSecretValue(secrets.GetSecretValueInput{SecretId: name})
	var ae *secrets.APIError
	var pemKey []byte
	var arn string
	switch {
	case errors.As(err, &ae) && ae.Code == secrets.CodeResourceNotFound:
		if pemKey, err = edge.NewSigningKey(); err != nil {
			return err
		}
		s := string(pemKey)
		out, err := store.CreateSecret(secrets.CreateSecretInput{Name: name, SecretString: &s,
			Description: "PEM private key of the edge's trusted key group " + r.spec.Edge.KeyGroup + " (signed URLs of " + r.spec.Name + ")"})
		if err != nil {
			return fmt.Errorf("store the signing key: %w", err)
		}
		arn = out.ARN
	case err != nil:
		return fmt.Errorf("read the signing key: %w", err)
	default:
		if cur.SecretString == nil {
			return fmt.Errorf("read the signing key: secret %s holds no string", name)
		}
		pemKey, arn = []byte(*cur.SecretString), cur.ARN
	}
	key, err := edge.ParseSigningKey(pemKey)
	if err != nil {
		return fmt.Errorf("secret %s: %w", name, err)
	}
	r.t.st.keyID, r.t.st.keyPEM, r.t.st.keyARN = key.ID, key.PublicPEM, arn
	if err := r.derive(ctx, &r.t, r.cfg); err != nil { // the app role may now read the key
		return err
	}
	r.say("edge: signing key %s of key group %s in secret %s", key.ID, r.spec.Edge.KeyGroup, name)
	return nil
}

// storagePolicies are the app role's policies from these tiers: its S3
// statements (from the spec's bucket grants) once the store runs, and
// reading the signing key's secret once the key is made.
func storagePolicies(v *tiers, c Configs) []iam.Policy {
	var ps []iam.Policy
	if v.st.s3Up {
		ps = append(ps, c.Storage.ObjStore.Roles[c.AppRole]...)
	}
	if v.st.keyARN != "" {
		ps = append(ps, iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
			Sid: "ReadSigningKey", Effect: iam.Allow, Action: iam.StringList{"secretsmanager:GetSecretValue"}, Resource: iam.StringList{v.st.keyARN},
		}}})
	}
	return ps
}

// edgeCredentials is the edge's own identity for origin access control:
// credentials of the edge role, registered with the store, issued again
// by the SDK's credentials cache before they expire.
func (r *Region) edgeCredentials() aws.CredentialsProvider {
	reg, role := r.t.st.registrar, r.cfg.Storage.EdgeRole
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		c, err := reg.Issue(role, "edge")
		if err != nil {
			return aws.Credentials{}, err
		}
		return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
			Source: "haven-edge", CanExpire: true, Expires: c.Expiration}, nil
	})
}

// startEdge starts the edge: a certificate from the region CA, its own
// identity on the bucket origins, the load balancer (verified against the
// region CA) as the default origin, the signing key's public half as the
// trusted key group.
func (r *Region) startEdge(ctx context.Context) error {
	cfg := r.cfg.Storage.Edge
	if cfg.Addr == "" {
		return nil
	}
	tlsCfg, err := r.t.ca.ServerTLS(r.cfg.Storage.EdgeNames, r.cfg.Storage.EdgeIPs, 90*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issue edge certificate: %w", err)
	}
	cfg.TLS, cfg.Logger = tlsCfg, r.opts.Logger
	creds := r.edgeCredentials()
	origins := make([]edge.Origin, len(cfg.Origins))
	for i, o := range cfg.Origins {
		if o.OAC != nil {
			oac := *o.OAC
			oac.Credentials = creds
			o.OAC = &oac
		} else {
			o.TLS = &tls.Config{RootCAs: r.t.ca.Pool(), MinVersion: tls.VersionTLS12}
		}
		origins[i] = o
	}
	cfg.Origins = origins
	if len(cfg.KeyGroups) > 0 {
		cfg.KeyGroups = []edge.KeyGroup{{ID: cfg.KeyGroups[0].ID, PublicKeys: []edge.PublicKey{{ID: r.t.st.keyID, PEM: r.t.st.keyPEM}}}}
	}
	cfg.OnEvent = func(e edge.Event) {
		r.events.Emit(api.Event{Component: "edge", Kind: e.Kind, Subject: e.Subject, Message: e.Message, Attrs: e.Attrs})
	}
	e, err := edge.New(cfg)
	if err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		return fmt.Errorf("start edge on %s: %w (set edge.listen to a free address, or empty to run without the edge)", cfg.Addr, err)
	}
	r.t.st.edge = e
	r.say("edge: %s → %d behaviours, the load balancer for the rest (CA %s)", e.URL(), len(cfg.Behaviors), r.caPath())
	return nil
}

func (r *Region) stopEdge(ctx context.Context) error {
	if r.t.st.edge == nil {
		return nil
	}
	err := r.t.st.edge.Stop(ctx)
	if _, rerr := r.t.st.registrar.RevokeInstance(ctx, "edge"); rerr != nil && err == nil {
		r.log.Warn("revoke the edge's credentials in the object store", "err", rerr)
	}
	return err
}

// storageEnv is what the app's environment needs at run time from these
// tiers: the signing key's ID.
func storageEnv(t *tiers, env map[string]string) {
	if t.st.keyID != "" {
		env["CLOUDFRONT_KEY_PAIR_ID"] = t.st.keyID
	}
}

// releaseEndpoints serves the release task's metadata with the release
// role (the region's deploy pipeline), or the app role when the store is
// not running.
func (r *Region) releaseEndpoints() *imds.Endpoints {
	if r.t.st.releaseMD != nil {
		return r.t.st.releaseMD
	}
	return r.t.imds
}

// edgeAPI gives the edge routes the running edge (nil when none runs).
func (a *regionAPI) edgeAPI() routes.Edge {
	if e := a.r.view().st.edge; e != nil {
		return e
	}
	return nil
}

// storageStatus adds the store's and the edge's snapshots to the status.
func (r *Region) storageStatus(st *api.Status, v *tiers) {
	if w := v.st.watcher; w != nil {
		o := w.Observed()
		s := &api.ObjStoreStatus{Endpoint: r.cfg.Storage.S3Endpoint, PID: o.Status.PID, Reachable: o.Err == nil, Polled: o.Polled,
			Credentials: o.Status.Credentials, MaxUploadBytes: o.Status.MaxUploadBytes,
			RejectedUploads: o.Status.RejectedUploads, AbortedUploads: o.Status.AbortedUploads, Buckets: []api.ObjStoreBucket{}}
		if o.Err != nil {
			s.Error = o.Err.Error()
		}
		for _, b := range o.Status.Buckets {
			s.Buckets = append(s.Buckets, api.ObjStoreBucket{Name: b.Name, Objects: b.Objects, Bytes: b.Bytes, IncompleteUploads: b.IncompleteUploads})
		}
		for _, rc := range o.Status.Requests {
			s.Requests += rc.Count
			if rc.Outcome != "OK" {
				s.Errors += rc.Count
			}
		}
		st.ObjStore = s
		st.Endpoints.S3 = s.Endpoint
	}
	if e := v.st.edge; e != nil {
		x := e.Stats()
		es := &api.EdgeStatus{URL: e.URL(), KeyGroup: r.spec.Edge.KeyGroup, KeyPairID: v.st.keyID,
			Requests: x.Requests, Hits: x.Hits, RefreshHits: x.RefreshHits, Misses: x.Misses, StaleServed: x.StaleServed,
			StaleIfError: x.StaleIfError, Collapsed: x.Collapsed, PassThrough: x.PassThrough, OriginRequests: x.OriginRequests,
			OriginErrors: x.OriginErrors, Denied: x.Denied, Rejected: x.Rejected, Invalidations: x.Invalidations,
			Evictions: x.Evictions, Objects: x.Objects, Bytes: x.Bytes, HitRatio: x.HitRatio}
		for _, b := range r.spec.Edge.Behaviors {
			line := b.Path + " → " + b.Target
			if b.Signed {
				line += " (signed)"
			}
			if lo, def, hi := b.TTLs(); b.Caching() {
				line += fmt.Sprintf(" ttl %s/%s/%s", lo, def, hi)
			}
			es.Behaviors = append(es.Behaviors, line)
		}
		es.Behaviors = append(es.Behaviors, "* → lb (uncached)")
		st.Edge = es
		st.Endpoints.Edge = es.URL
	}
}
