package plan

import "strings"

// Rule is how a running region takes a change of one field (or of every
// field under a prefix).
type Rule struct {
	Action    Action
	Component string
	Reason    string
	WayOut    string
}

const downUp = "haven down, then haven up with the new spec (a stopped region takes any change; the database and its backups are kept)"

// rules maps a field, or a prefix of fields, to its rule; the longest
// match wins. Every leaf of the spec must match one
// (TestEveryFieldHasARule).
var rules = map[string]Rule{
	// Capacity and health: the Auto Scaling Group and its target group
	// change in place, as on AWS.
	"fleet.min":                          {InPlace, "fleet", "the Auto Scaling Group's capacity changes at once; desired stays within min and max", ""},
	"fleet.max":                          {InPlace, "fleet", "the Auto Scaling Group's capacity changes at once; desired stays within min and max", ""},
	"fleet.desired":                      {InPlace, "fleet", "the Auto Scaling Group launches or drains instances to the new desired capacity", ""},
	"fleet.health_check_type":            {InPlace, "fleet", "the fleet judges instances by the new health check type from its next tick", ""},
	"fleet.grace_period":                 {InPlace, "fleet", "instances launched from now on get the new grace period", ""},
	"fleet.instance_refresh":             {InPlace, "releases", "the instance refresh's preferences and gates change at once: haven deploy rollouts started from now on use them; a rollout under way keeps the checkpoints and bake it started with and is judged by the new gates from its next tick", ""},
	"fleet.scaling":                      {InPlace, "scaling", "the running scaler's policies and scheduled actions are replaced (scheduled actions put at run time too), from its next decision; a changed warmup waits for the next haven up", ""},
	"app.health_check":                   {InPlace, "load balancer", "the target group's health check changes from each target's next check; no target is re-registered", ""},
	"load_balancer.algorithm":            {InPlace, "load balancer", "the target group routes new requests with the new algorithm", ""},
	"load_balancer.deregistration_delay": {InPlace, "load balancer", "targets that start draining from now on get the new delay", ""},
	"load_balancer.slow_start":           {InPlace, "load balancer", "targets that become healthy from now on ramp up over the new slow start", ""},
	"load_balancer.idle_timeout":         {InPlace, "load balancer", "requests from now on may wait on a silent target for the new idle timeout; the listeners' keep-alive and request-header timeouts keep the value they started with until the load balancer restarts (haven down, then haven up)", ""},
	"secrets.db.rotation":                {InPlace, "secrets", "the database secret's rotation schedule is replaced", ""},
	"secrets.db.strategy":                {InPlace, "secrets", "the next rotation of the database secret uses the new strategy", ""},
	"security_groups":                    {InPlace, "network", "the security groups' nftables ruleset is replaced in one transaction; established connections stay", ""},
	"alarms":                             {InPlace, "alarms", "the alarm engine takes the new definitions and actions: every alarm keeps its state and history, as PutMetricAlarm on an existing alarm; undelivered notifications are still delivered", ""},
	"time_scale":                         {InPlace, "alarms", "the alarms' periods are divided by the new scale; every alarm keeps its state (the sampler keeps its interval, at most 1 s, so every period still has samples); the scaler keeps the period and warmup it started with until the next haven up", ""},
	"metrics.listen":                     {Refused, "metrics", "Prometheus scrapes this address; the listener is opened when the operations tier starts", downUp},
	"console.listen":                     {Refused, "console", "the console's login links and sessions are bound to this address; the listener is opened when the operations tier starts", downUp},

	// The launch template: every instance is replaced.
	"app.command":  {Rolling, "fleet", "the launch template changes: every instance is replaced, launching the new one before draining the old, one at a time", ""},
	"app.env":      {Rolling, "fleet", "the launch template changes: every instance is replaced, launching the new one before draining the old, one at a time", ""},
	"app.instance": {Rolling, "fleet", "the instance size changes: every instance is replaced, launching the new one before draining the old, one at a time", ""},

	// Settings nothing local runs on.
	"app.release":            {InPlace, "release", "recorded: the release task runs at the next haven up, not on apply", ""},
	"app.migrations":         {InPlace, "releases", "recorded: haven deploy asks builds for their migrations with the new arguments after the next haven up, not on apply", ""},
	"aws":                    {InPlace, "aws", "recorded for haven aws tfvars: nothing local uses it", ""},
	"aws.region":             {Refused, "region", "the local region serves its AWS APIs in this region: secret ARNs, credentials and metadata carry it", downUp},
	"aws.availability_zones": {Refused, "zones", "the instances' and database nodes' metadata name these availability zones", "keep them, or " + downUp},

	// Refused: identity, placement and the database's shape.
	"name":  {Refused, "region", "the region name names its cgroups, secret, IAM role, backup stanza and database roles", "keep the name; for a region of another name use another --state-dir"},
	"zones": {Refused, "zones", "the database nodes and every instance live in these zones; a running database does not move zones", "keep the zones, or " + downUp},
	"app.port": {Refused, "network", "the security groups open app-sg on this port to the load balancer for the instances in service; they would be cut off mid-roll",
		"keep the port, or " + downUp},
	"database.engine":           {Refused, "database", "the engine is postgres", "keep postgres"},
	"database.version":          {Refused, "database", "a PostgreSQL major version upgrade needs pg_upgrade and downtime; a running region does not do it", "keep version 15; restore a backup into a region of the new version instead"},
	"database.multi_az":         {Refused, "database", "adding or removing the standby of a running database is not supported", downUp},
	"database.durability":       {Refused, "database", "the failover controller's durability mode is fixed while it runs", downUp},
	"database.name":             {Refused, "database", "the app's data lives in this database; renaming it would leave the data behind", "keep the name"},
	"database.user":             {Refused, "database", "the app's tables belong to this role and its two login roles; renaming it would leave them behind", "keep the user"},
	"database.endpoint":         {Restart, "database endpoint", "the endpoint listens on the new address too; the database secret names it at once (same login, a new version); then the old address closes and every connection through the endpoint is cut, as on a failover, and the app reconnects to the port the secret now names; new instances get PGHOST and PGPORT of the new address; the database nodes keep their addresses until the next haven up (in a VPC only the host's address moves: instances reach the database at its VPC address)", ""},
	"database.backup_retention": {Refused, "backups", "pgBackRest's configuration is written when the backup tier starts", downUp},
	"database.backup_schedule":  {Refused, "backups", "pgBackRest's schedule is set when the backup tier starts", downUp},
	"load_balancer.https":       {Refused, "load balancer", "the listener's address is where every client connects; moving it is a restart of the load balancer, which the in-process load balancer cannot do without dropping connections", downUp},
	"load_balancer.http":        {Refused, "load balancer", "the redirect listener's address is set when the load balancer starts", downUp},
	"objstore": {Refused, "object store", "the store's configuration (listen address, buckets and their grants, limits, lifecycle) and the app role's S3 statements are set when the region starts",
		downUp + "; the buckets' data is kept"},
	"edge":           {Refused, "edge", "the edge's listener, behaviours and key group are set when it starts", downUp + "; the edge's cache starts empty"},
	"secrets.listen": {Refused, "secrets", "instances reach the Secrets Manager API at this address for their whole life", downUp},
	"identity": {Refused, "identity", "the identity provider's listener, directory, client registration and key schedule are set when it starts, and the instances' launch template carries its issuer; a running region does not restart it yet",
		"keep the identity section, or " + downUp + "; `haven identity rotate-key` rotates the signing key of a running region"},
}

// unknown is the rule of a field no rule covers.
var unknown = Rule{Refused, "region", "haven does not know how to change this field on a running region", downUp}

// RuleFor returns the rule of a field: the longest prefix in the table.
func RuleFor(field string) Rule {
	for f := field; f != ""; {
		if r, ok := rules[f]; ok {
			return r
		}
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return unknown
}

// Covered reports whether some rule covers the field.
func Covered(field string) bool { return RuleFor(field) != unknown }
