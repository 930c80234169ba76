package ckptlab.flink;

import java.util.Properties;

import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.Metric;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;

/**
 * A metric reporter in the harness's MiniCluster that keeps hold of the job's {@code numRestarts}
 * gauge (registered by Flink's SchedulerBase#registerJobMetrics, read from
 * ExecutionFailureHandler#getNumberOfRestarts): Flink's own count of restarts, which the REST API
 * shows only through a metric fetcher that refreshes every 10 s. Found by its factory through
 * META-INF/services (ReporterSetupBuilder loads reporter factories with a ServiceLoader); the
 * harness names it in {@code metrics.reporter.ckptlab.factory.class}.
 */
public final class RestartCounter implements MetricReporter, MetricReporterFactory {
    /** The option the harness sets to load this reporter. */
    static final String FACTORY_OPTION = "metrics.reporter.ckptlab.factory.class";
    /** The numRestarts gauge of each job, by its id (a resubmission is a new job with its own). */
    private static final java.util.Map<String, Gauge<?>> NUM_RESTARTS = new java.util.concurrent.ConcurrentHashMap<>();

    @Override
    public MetricReporter createMetricReporter(Properties properties) {
        return new RestartCounter();
    }

    @Override
    public void open(MetricConfig config) {}

    @Override
    public void close() {}

    @Override
    public void notifyOfAddedMetric(Metric metric, String name, MetricGroup group) {
        if ("numRestarts".equals(name) && metric instanceof Gauge) {
            String job = group.getAllVariables().get("<job_id>");
            NUM_RESTARTS.put(job == null ? "" : job, (Gauge<?>) metric);
        }
    }

    @Override
    public void notifyOfRemovedMetric(Metric metric, String name, MetricGroup group) {}

    /** Flink's numRestarts of the job {@code job}, or -1 before its gauge was registered. */
    static long restarts(String job) {
        Gauge<?> g = NUM_RESTARTS.get(job);
        Object v = g == null ? null : g.getValue();
        return v instanceof Number ? ((Number) v).longValue() : -1;
    }
}
