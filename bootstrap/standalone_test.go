package bootstrap

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRepositoryStandsAlone fails when a file a user of a clone reads (the README, the
// documents under docs/ and deploy/, every Go, SQL, YAML and build file) points at the
// files the project was first written against, outside the repository (its contract,
// style guide and notes): by a path into a sibling directory, or by their bare names. What a user needs of the contract is in
// docs/contract.md.
func TestRepositoryStandsAlone(t *testing.T) {
	root := mustRepoRoot(t)
	// Spelled in pieces, so that this file does not match itself.
	outside := regexp.MustCompile(`\.\./` + `shared|\bSP` + `EC\b|\bST` + `YLE\b|\bNO` + `TES\b`)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "node_modules", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !readByUsers(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			if m := outside.FindString(line); m != "" {
				t.Errorf("%s:%d mentions %q: say it in the repository's own words, or point at docs/contract.md", rel, i+1, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s: the walk missed the repository", checked, root)
	}
}

// readByUsers reports whether the file at rel (relative to the module root) is one a user
// of the repository reads.
func readByUsers(rel string) bool {
	switch filepath.Base(rel) {
	case "Makefile", "Dockerfile", ".env.example", "run":
		return true
	}
	switch filepath.Ext(rel) {
	case ".go", ".md", ".sql", ".yml", ".yaml", ".json", ".html":
		return true
	}
	return false
}
