package cgroup

import (
	"reflect"
	"strings"
	"testing"
)

const mountinfoV1 = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const procCgroupV1 = `9:name=systemd:/
4:memory:/sandbox/x
2:cpu,cpuacct:/
6:freezer:/
0::/
`

func TestDetect(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		self      string
		ctrls     map[string][]string
		want      layout
	}{
		{
			name:      "hybrid v2 without controllers falls back to v1, nested under own cgroup",
			mountinfo: mountinfoV1, self: procCgroupV1,
			ctrls: map[string][]string{"/sys/fs/cgroup/unified": {"hugetlb"}},
			want: layout{Version: 1, V1Dirs: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
				"memory": "/sys/fs/cgroup/memory/sandbox/x", "freezer": "/sys/fs/cgroup/freezer",
			}},
		},
		{
			name:      "unified v2",
			mountinfo: "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
			self:      "0::/user.slice\n",
			ctrls:     map[string][]string{"/sys/fs/cgroup/user.slice": {"cpuset", "cpu", "io", "memory", "pids"}},
			want:      layout{Version: 2, V2Dir: "/sys/fs/cgroup/user.slice"},
		},
		{
			name:      "v2 mounted at a subtree (container)",
			mountinfo: "30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			self:      "0::/docker/abc\n",
			ctrls:     map[string][]string{"/sys/fs/cgroup": {"cpu", "memory"}},
			want:      layout{Version: 2, V2Dir: "/sys/fs/cgroup"},
		},
		{
			name:      "nothing usable",
			mountinfo: "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			self:      "0::/\n",
			want:      layout{Reason: "cgroup2 at /sys/fs/cgroup lacks cpu or memory controllers (has ); no cgroup v1 cpu and memory hierarchies mounted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := detect(parseMountinfo(strings.NewReader(tt.mountinfo)), parseProcCgroup(strings.NewReader(tt.self)),
				func(d string) []string { return tt.ctrls[d] })
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\`); got != `/a b\` {
		t.Errorf("got %q", got)
	}
}

func TestCPUQuota(t *testing.T) {
	for _, tt := range []struct {
		cores float64
		want  int64
	}{{0.25, 25000}, {1, 100000}, {2.5, 250000}, {0.001, 1000}} {
		if got := cpuQuota(tt.cores); got != tt.want {
			t.Errorf("cpuQuota(%v) got %d, want %d", tt.cores, got, tt.want)
		}
	}
}
