package cgroup

import (
	"path/filepath"
	"testing"
)

func TestRegionRootMatchesItsPatternOnly(t *testing.T) {
	root := RegionRoot("courses", "/srv/a/.haven")
	if ok, _ := filepath.Match(RegionPattern("/srv/a/.haven"), root); !ok {
		t.Errorf("%s does not match its state dir's pattern", root)
	}
	if ok, _ := filepath.Match(RegionPattern("/srv/b/.haven"), root); ok || root == RegionRoot("courses", "/srv/b/.haven") {
		t.Errorf("two state dirs share cgroup root %s", root)
	}
}
