package bootstrap_test

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the import path of this repository, as go.mod declares it; TestArchitecture
// checks that the two agree.
const module = "warehouse"

const uuidPath = "github.com/google/uuid"

// TestArchitecture reads the import list of every package in the module with go/build
// and fails when one breaks a dependency rule of the layers (README "Architecture"). Test files are not checked:
// tests may wire a memory store into an HTTP adapter.
func TestArchitecture(t *testing.T) {
	root := mustModuleRoot(t)
	ctxt := build.Default
	ctxt.Dir = root // build.Import asks the go command, which must run inside the module

	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		if p != root {
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		if !hasGoFiles(t, p) {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		importPath := path.Join(module, filepath.ToSlash(rel))
		pkg, err := ctxt.Import(importPath, "", 0)
		var noGo *build.NoGoError
		switch {
		case errors.As(err, &noGo):
			return nil // every file is excluded by build constraints
		case err != nil:
			t.Errorf("read imports of %s: %v", importPath, err)
			return nil
		}
		found = append(found, importPath)
		for _, problem := range checkImports(importPath, pkg.Imports) {
			t.Error(problem)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	// a walk that found nothing would pass vacuously
	for _, want := range []string{"domain", "ports", "application", "bootstrap", "loadgen", "bench", "cmd/warehouse", "cmd/warehouse-bench"} {
		if !slices.Contains(found, module+"/"+want) {
			t.Errorf("package %s/%s not found under %s (found %v)", module, want, root, found)
		}
	}
}

// checkImports returns one message for each import of pkg that breaks a layering rule,
// naming the package, the import and the rule.
func checkImports(pkg string, imports []string) []string {
	var problems []string
	for _, imp := range imports {
		if rule := brokenRule(pkg, imp); rule != "" {
			problems = append(problems, fmt.Sprintf("%s imports %s: %s", pkg, imp, rule))
		}
	}
	return problems
}

// brokenRule returns the rule that pkg importing imp breaks, or "" when the import is allowed.
func brokenRule(pkg, imp string) string {
	var (
		domain      = module + "/domain"
		ports       = module + "/ports"
		portstest   = module + "/ports/portstest"
		application = module + "/application"
		adapters    = module + "/adapters"
		bootstrap   = module + "/bootstrap"
		cmd         = module + "/cmd"
		bench       = module + "/bench"
		benchCmd    = module + "/cmd/warehouse-bench"
		loadgen     = module + "/loadgen"
	)
	if within(imp, bootstrap) && !within(pkg, cmd) && !within(pkg, bootstrap) {
		return "only cmd/ may import bootstrap"
	}
	// Tooling is not the service: the service binary (cmd/warehouse, through bootstrap)
	// never links the benchmark, and the load generator stays out of the service's layers.
	if within(imp, bench) && pkg != benchCmd && !within(pkg, bench) {
		return "only cmd/warehouse-bench may import the benchmark"
	}
	if within(imp, loadgen) && !within(pkg, bootstrap) && !within(pkg, bench) && !within(pkg, loadgen) {
		return "only bootstrap (produce) and the benchmark may import the load generator"
	}
	std := isStd(imp)
	switch {
	case within(pkg, loadgen):
		if !std && imp != domain {
			return "loadgen may import only the standard library and " + domain
		}
	case within(pkg, domain):
		if !std && imp != uuidPath && !within(imp, domain) {
			return "domain may import only the standard library and " + uuidPath
		}
	case within(pkg, application):
		// frameworks and drivers belong to adapters and bootstrap
		for _, d := range []string{
			"github.com/gofiber/", "github.com/prometheus/", "github.com/uptrace/bun",
			"github.com/jackc/", "github.com/rabbitmq/amqp091-go",
		} {
			if strings.HasPrefix(imp, d) {
				return "application never imports a framework or driver"
			}
		}
		if !std && imp != ports && imp != domain && !within(imp, application) {
			return "application may import only the standard library, " + ports + " and " + domain
		}
	case within(pkg, portstest):
		if !std && imp != uuidPath && imp != ports && imp != domain {
			return "portstest may import only the standard library, " + domain + ", " + ports + " and " + uuidPath
		}
	case within(pkg, ports):
		if !std && imp != domain && !within(imp, ports) {
			return "ports may import only the standard library and " + domain
		}
	case within(pkg, adapters):
		own := adapterRoot(pkg)
		if within(imp, adapters) && !within(imp, own) {
			return "adapters never import each other"
		}
	}
	return ""
}

// adapterRoot returns warehouse/adapters/X for any package at or below it.
func adapterRoot(pkg string) string {
	rest := strings.TrimPrefix(pkg, module+"/adapters/")
	name, _, _ := strings.Cut(rest, "/")
	return module + "/adapters/" + name
}

// within reports whether p is the package root or one below it.
func within(p, root string) bool { return p == root || strings.HasPrefix(p, root+"/") }

// isStd reports whether p is a standard library path: its first element has no dot.
// Our own module's path has no dot either, so it is excluded by name.
func isStd(p string) bool {
	if within(p, module) {
		return false
	}
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

func TestCheckImports(t *testing.T) {
	tests := []struct {
		name    string
		pkg     string
		imports []string
		bad     []string // the imports that must be reported
	}{
		{"adapter: the benchmark", "warehouse/adapters/postgres",
			[]string{"warehouse/bench"}, []string{"warehouse/bench"}},
		{"bootstrap: the benchmark", "warehouse/bootstrap",
			[]string{"warehouse/bench"}, []string{"warehouse/bench"}},
		{"the service command: the benchmark", "warehouse/cmd/warehouse",
			[]string{"warehouse/bootstrap", "warehouse/bench"}, []string{"warehouse/bench"}},
		{"the benchmark command: the benchmark and bootstrap", "warehouse/cmd/warehouse-bench",
			[]string{"warehouse/bench", "warehouse/bootstrap"}, nil},
		{"the benchmark: adapters and the load generator", "warehouse/bench",
			[]string{"warehouse/adapters/amqp", "warehouse/loadgen", "gonum.org/v1/plot"}, nil},
		{"bootstrap: the load generator", "warehouse/bootstrap",
			[]string{"warehouse/loadgen"}, nil},
		{"application: the load generator", "warehouse/application",
			[]string{"warehouse/loadgen"}, []string{"warehouse/loadgen"}},
		{"adapter: the load generator", "warehouse/adapters/amqp",
			[]string{"warehouse/loadgen"}, []string{"warehouse/loadgen"}},
		{"loadgen: std and domain", "warehouse/loadgen",
			[]string{"container/heap", "math/rand/v2", "warehouse/domain"}, nil},
		{"loadgen: an adapter, ports and uuid", "warehouse/loadgen",
			[]string{"warehouse/adapters/amqp", "warehouse/ports", uuidPath},
			[]string{"warehouse/adapters/amqp", "warehouse/ports", uuidPath}},
		{"domain: std and uuid", "warehouse/domain",
			[]string{"bytes", "fmt", "iter", "unicode/utf8", uuidPath}, nil},
		{"domain: a framework", "warehouse/domain",
			[]string{"fmt", "github.com/gofiber/fiber/v2"}, []string{"github.com/gofiber/fiber/v2"}},
		{"domain: ports", "warehouse/domain",
			[]string{"warehouse/ports"}, []string{"warehouse/ports"}},
		{"domain: a lookalike of uuid", "warehouse/domain",
			[]string{"github.com/google/uuidx"}, []string{"github.com/google/uuidx"}},
		{"application: ports and domain", "warehouse/application",
			[]string{"context", "fmt", "warehouse/domain", "warehouse/ports"}, nil},
		{"application: drivers and frameworks", "warehouse/application",
			[]string{
				"github.com/gofiber/fiber/v2", "github.com/prometheus/client_golang/prometheus",
				"github.com/uptrace/bun", "github.com/jackc/pgx/v5", "github.com/rabbitmq/amqp091-go",
			},
			[]string{
				"github.com/gofiber/fiber/v2", "github.com/prometheus/client_golang/prometheus",
				"github.com/uptrace/bun", "github.com/jackc/pgx/v5", "github.com/rabbitmq/amqp091-go",
			}},
		{"application: an adapter", "warehouse/application",
			[]string{"warehouse/adapters/memory"}, []string{"warehouse/adapters/memory"}},
		{"application: bootstrap", "warehouse/application",
			[]string{"warehouse/bootstrap"}, []string{"warehouse/bootstrap"}},
		{"application: portstest", "warehouse/application",
			[]string{"warehouse/ports/portstest"}, []string{"warehouse/ports/portstest"}},
		{"application: uuid", "warehouse/application",
			[]string{uuidPath}, []string{uuidPath}},
		{"ports: domain", "warehouse/ports",
			[]string{"context", "time", "warehouse/domain"}, nil},
		{"ports: uuid", "warehouse/ports",
			[]string{uuidPath}, []string{uuidPath}},
		{"ports: application", "warehouse/ports",
			[]string{"warehouse/application"}, []string{"warehouse/application"}},
		{"portstest: its allowance", "warehouse/ports/portstest",
			[]string{"testing", "warehouse/domain", "warehouse/ports", uuidPath}, nil},
		{"portstest: an adapter", "warehouse/ports/portstest",
			[]string{"warehouse/adapters/memory"}, []string{"warehouse/adapters/memory"}},
		{"adapter: ports, domain, its driver", "warehouse/adapters/postgres",
			[]string{"warehouse/ports", "warehouse/domain", "github.com/uptrace/bun", "warehouse/migrations"}, nil},
		{"adapter: another adapter", "warehouse/adapters/cache",
			[]string{"warehouse/ports", "warehouse/adapters/postgres"}, []string{"warehouse/adapters/postgres"}},
		{"adapter: an adapter with a shared name prefix", "warehouse/adapters/amqp",
			[]string{"warehouse/adapters/amqpx"}, []string{"warehouse/adapters/amqpx"}},
		{"adapter: its own subpackage", "warehouse/adapters/postgres/pgtest",
			[]string{"warehouse/adapters/postgres"}, nil},
		{"adapter: bootstrap", "warehouse/adapters/http",
			[]string{"warehouse/bootstrap"}, []string{"warehouse/bootstrap"}},
		{"cmd: bootstrap", "warehouse/cmd/warehouse",
			[]string{"os", "warehouse/bootstrap"}, nil},
		{"migrations: bootstrap", "warehouse/migrations",
			[]string{"embed", "warehouse/bootstrap"}, []string{"warehouse/bootstrap"}},
		{"bootstrap: everything", "warehouse/bootstrap",
			[]string{"warehouse/adapters/postgres", "warehouse/adapters/http", "warehouse/application", "github.com/gofiber/fiber/v2"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkImports(tc.pkg, tc.imports)
			if len(got) != len(tc.bad) {
				t.Fatalf("checkImports(%s, %v) = %q, want %d problems about %v", tc.pkg, tc.imports, got, len(tc.bad), tc.bad)
			}
			for i, imp := range tc.bad {
				if want := tc.pkg + " imports " + imp + ":"; !strings.HasPrefix(got[i], want) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], want)
				}
			}
		})
	}
}

// TestServiceBinaryLinksNoBenchmark lists every package the service binary links (`go
// list -deps ./cmd/warehouse`): neither the benchmark nor its plotting library (gonum plot
// with its PDF, LaTeX and font packages, once 41 packages and a fifth of the binary) may
// be among them. The import rules keep bootstrap from importing the benchmark; this
// checks the outcome, whatever path a dependency takes.
func TestServiceBinaryLinksNoBenchmark(t *testing.T) {
	root := mustModuleRoot(t)
	cmd := exec.Command("go", "list", "-deps", "./cmd/warehouse")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/warehouse: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/bootstrap") {
		t.Fatalf("go list -deps ./cmd/warehouse does not name %s/bootstrap: %v", module, deps)
	}
	tooling := []string{module + "/bench", module + "/cmd/warehouse-bench", "gonum.org/",
		"codeberg.org/go-pdf/", "codeberg.org/go-latex/", "codeberg.org/go-fonts/", "git.sr.ht/~sbinet/gg"}
	for _, dep := range deps {
		for _, bad := range tooling {
			if within(dep, strings.TrimSuffix(bad, "/")) || strings.HasPrefix(dep, bad) {
				t.Errorf("the service binary links %s", dep)
			}
		}
	}
}

// mustModuleRoot finds the directory of go.mod above the working directory and checks
// that it declares module.
func mustModuleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if name, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					if name = strings.Trim(strings.TrimSpace(name), `"`); name != module {
						t.Fatalf("go.mod in %s declares module %q, want %q", dir, name, module)
					}
					return dir
				}
			}
			t.Fatalf("go.mod in %s has no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func hasGoFiles(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("read %s: %v", dir, err)
		return false
	}
	return slices.ContainsFunc(entries, func(e fs.DirEntry) bool {
		return !e.IsDir() && strings.HasSuffix(e.Name(), ".go")
	})
}
