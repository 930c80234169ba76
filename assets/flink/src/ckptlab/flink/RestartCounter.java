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
    private static volatile Gauge<?> numRestarts;

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
            numRestarts = (Gauge<?>) metric;
        }
    }

    @Override
    public void notifyOfRemovedMetric(Metric metric, String name, MetricGroup group) {}

    /** Flink's numRestarts of the job, or -1 before the gauge was registered. */
    static long restarts() {
        Gauge<?> g = numRestarts;
        Object v = g == null ? null : g.getValue();
        return v instanceof Number ? ((Number) v).longValue() : -1;
    }
}
