package pgha

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestSingleNodeLifecycle(t *testing.T) {
	dir := testDir(t)
	nodes := testNodes(t, dir, 1)
	c := startTestCluster(t, Config{Nodes: nodes, StateFile: filepath.Join(dir, "state.json")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for i := 0; i < 2; i++ { // idempotent
		if err := c.Bootstrap(ctx, "courses", "courses_app"); err != nil {
			t.Fatalf("bootstrap #%d: %v", i, err)
		}
	}
	// The role logs in with nothing but a password.
	if conn, err := pgx.Connect(ctx, nodes[0].DSN("courses_app", "courses")); err == nil {
		conn.Close(ctx)
		t.Error("app role connected over TCP without a password")
	}
	if err := c.SetPassword(ctx, "courses_app", testPassword); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, withPassword(nodes[0].DSN("courses_app", "courses")))
	if err != nil {
		t.Fatalf("connect as app role over tcp: %v", err)
	}
	var owner string
	if err := conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatalf("app role cannot create a table in its database: %v", err)
	}
	conn.Close(ctx)
	if owner != "courses_app" {
		t.Errorf("database owner = %q, want courses_app", owner)
	}
	// The superuser must not be reachable over TCP.
	if conn, err := pgx.Connect(ctx, nodes[0].DSN("postgres", "postgres")); err == nil {
		conn.Close(ctx)
		t.Error("postgres superuser connected over TCP; want rejected")
	}

	var settings = map[string]string{}
	admin, err := c.inst["db-a"].connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"wal_level", "wal_log_hints", "listen_addresses", "shared_buffers", "hot_standby", "fsync", "synchronous_standby_names"} {
		var v string
		if err := admin.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		settings[name] = v
	}
	admin.Close(ctx)
	want := map[string]string{"wal_level": "replica", "wal_log_hints": "on", "listen_addresses": nodes[0].ListenAddr.String(),
		"shared_buffers": "32MB", "hot_standby": "on", "fsync": "on", "synchronous_standby_names": ""}
	for k, w := range want {
		if settings[k] != w {
			t.Errorf("%s = %q, want %q", k, settings[k], w)
		}
	}

	st := c.Status()
	if st.State.Primary != "db-a" || st.State.Epoch != 1 || len(st.Nodes) != 1 {
		t.Errorf("status = %+v, want db-a primary at epoch 1", st)
	}
	pid := c.inst["db-a"].pid()
	if pid == 0 || !pidAlive(pid) {
		t.Fatalf("postmaster pid %d not alive", pid)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if pidAlive(pid) {
		t.Errorf("postmaster %d still alive after Stop", pid)
	}
}
