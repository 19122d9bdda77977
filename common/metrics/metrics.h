#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace flywheel::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Increment(double amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
  // Mirrors a total kept elsewhere (e.g. pool statistics copied by a collect hook).
  void SetTotal(double total) { value_.store(total, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Cumulative counts per bucket (last is +Inf), the sum and the count.
  std::vector<uint64_t> CumulativeCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Latency buckets in seconds, 100 us .. 10 s.
std::vector<double> LatencyBuckets();

// A set of metric families rendered in the Prometheus text format (version 0.0.4). Metrics are
// created on first use and live as long as the registry; returned pointers stay valid. Passed
// by pointer from main; there is no global registry. Thread-safe.
class Registry {
 public:
  Counter* GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help, const Labels& labels,
                          const std::vector<double>& upper_bounds = LatencyBuckets());

  // Runs before every render, e.g. to copy pool statistics into gauges.
  void AddCollectHook(std::function<void()> hook);

  std::string Render();

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& GetFamily(const std::string& name, Type type, const std::string& help);

  std::mutex mu_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void()>> hooks_;
};

// {a="x",b="y"} with values escaped; empty string for no labels.
std::string FormatLabels(const Labels& labels);

}  // namespace flywheel::metrics
