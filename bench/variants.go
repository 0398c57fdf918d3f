package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// --pipeline-variants: the pipeline run every way its figures were once taken and could
// be taken, one change at a time, in interleaved rounds on this machine, so that what each
// way costs is measured rather than guessed (docs/benchmarks/README.md quotes a run). It
// prints a table and writes no report.

// bigBatch is the BATCH_SIZE of the variant that asks whether batch messages want larger
// batches of the consumer.
const bigBatch = 10000

// pipeVariant is one way of running the pipeline, and the variant it changes one thing
// of (base, 1-based as in the table; 0 for none).
type pipeVariant struct {
	name string
	base int
	spec pipeSpec
}

// pipeVariants lists the variants in the order of the table.
func (o Options) pipeVariants() []pipeVariant {
	batch := func(env map[string]string) pipeSpec {
		return pipeSpec{pub: pubProduce, perMessage: batchPerMessage, env: env}
	}
	return []pipeVariant{
		{"bare consumer + bare publisher, both in the benchmark process (the ceiling of old)", 0, pipeSpec{bare: true, pub: pubWindow}},
		{"bare publisher in a process of its own (the ceiling now)", 1, pipeSpec{bare: true, pub: pubBareProcess}},
		{"its window of confirms 4096 instead of 1024", 2, pipeSpec{bare: true, pub: pubBareProcess, window: 4096}},
		{"the bare consumer in a process of its own too (the benchmark only polls)", 2, pipeSpec{bareChild: true, pub: pubBareProcess}},
		{"warehouse consume + the project's Publisher in the benchmark process, PublishBatch of 16384 (the service of old)", 0, pipeSpec{pub: pubProject}},
		{"the bare publisher instead, in the benchmark process (one sliding window, no chunks)", 5, pipeSpec{pub: pubWindow}},
		{"the bare publisher in a process of its own", 6, pipeSpec{pub: pubBareProcess}},
		{"warehouse produce --file instead (its default --batch 5000; the service now)", 7, pipeSpec{pub: pubProduce}},
		{"produce --batch 10000", 8, pipeSpec{pub: pubProduce, batch: 10000}},
		{fmt.Sprintf("produce --per-message %d (prefetch %d messages)", batchPerMessage, o.Prefetch), 8, batch(nil)},
		{fmt.Sprintf("prefetch %d messages (the batch pipeline now)", o.batchPrefetch()), 10,
			batch(map[string]string{"AMQP_PREFETCH": strconv.Itoa(o.batchPrefetch())})},
		{fmt.Sprintf("consumer batches of %d events (BATCH_SIZE, prefetch and STREAM_BUFFER as large)", bigBatch), 11,
			batch(map[string]string{"BATCH_SIZE": strconv.Itoa(bigBatch), "AMQP_PREFETCH": strconv.Itoa(bigBatch), "STREAM_BUFFER": strconv.Itoa(bigBatch)})},
	}
}

// pipelineVariants runs every variant in each of Rounds rounds, in the table's order, and
// prints the table: every round's events/s, the median round's figures, and the median
// over the rounds of each variant's events/s over its base's in the same round (a slow
// spell of the machine then weighs on both).
func (r *runner) pipelineVariants(ctx context.Context, stdout io.Writer) error {
	vs := r.o.pipeVariants()
	results := make([][]IngestResult, len(vs))
	for i := range r.o.Rounds {
		for j, v := range vs {
			res, err := r.runPipeline(ctx, fmt.Sprintf("pipeline-v%d", j+1), i, v.spec)
			if err != nil {
				return fmt.Errorf("variant %d (%s), round %d: %w", j+1, v.name, i+1, err)
			}
			if !res.Complete || res.Verified != "ok" || res.Rejected+res.Retried+res.Duplicates > 0 {
				return fmt.Errorf("variant %d (%s), round %d: incorrect: complete %v, verified %s, rejected %d, retried %d, duplicates %d",
					j+1, v.name, i+1, res.Complete, res.Verified, res.Rejected, res.Retried, res.Duplicates)
			}
			results[j] = append(results[j], res)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tVARIANT\tOF\tEVENTS/S (MEDIAN)\t× OF (MEDIAN)\tROUNDS\tPUBLISH S\tCONSUMER CPU S\tPUBLISHER CPU S\tPOSTGRESQL CPU S\tRABBITMQ CPU S\tHOST BUSY")
	for j, v := range vs {
		rs := results[j]
		rates := make([]string, len(rs))
		for k, res := range rs {
			rates[k] = group(int64(res.EventsPerSecond + 0.5))
		}
		base, ratio := "—", "—"
		if v.base > 0 {
			base = strconv.Itoa(v.base)
			ratios := make([]float64, len(rs))
			for k := range rs {
				ratios[k] = rs[k].EventsPerSecond / results[v.base-1][k].EventsPerSecond
			}
			slices.Sort(ratios)
			ratio = fmt.Sprintf("%.2f", ratios[(len(ratios)-1)/2])
		}
		m := medianResult(rs)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%.2f\t%.2f\t%.0f%%\n", j+1, v.name, base, group(int64(m.EventsPerSecond+0.5)),
			ratio, strings.Join(rates, " / "), m.PublishSeconds, opt(m.CPUSeconds, 2), opt(m.PublisherCPUSeconds, 2),
			m.PostgresCPUSeconds, m.BrokerCPUSeconds, 100*m.HostCPUBusy)
	}
	return tw.Flush()
}

// medianResult is the run of median events/s (the lower middle of an even count).
func medianResult(rs []IngestResult) IngestResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b IngestResult) int { return cmp.Compare(a.EventsPerSecond, b.EventsPerSecond) })
	return s[(len(s)-1)/2]
}

// variants is the run of --pipeline-variants: the stream, then the variants' rounds.
func (r *runner) variants(ctx context.Context, stdout io.Writer) error {
	if err := r.checkServices(ctx); err != nil {
		return err
	}
	r.stream = generate(r.o.Events)
	return r.pipelineVariants(ctx, stdout)
}
