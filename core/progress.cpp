#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

namespace atspeed {

ProgressBar::ProgressBar(std::string label, int64_t total, std::FILE* out, ProgressOptions options,
                         int64_t done_at_start)
    : label_(std::move(label)),
      total_(total),
      out_(out),
      options_(options),
      tty_(options.force_tty >= 0 ? options.force_tty == 1 : (out && isatty(fileno(out)) != 0)),
      done_(done_at_start),
      done_at_start_(done_at_start),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  // Leave the terminal on a fresh line; never draw a final state the caller did not reach.
  if (line_open_ && out_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

double ProgressBar::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string ProgressBar::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  const auto total = static_cast<int64_t>(std::llround(s));
  const int64_t h = total / 3600, m = (total % 3600) / 60, sec = total % 60;
  char buf[48];
  if (h > 0)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(h), static_cast<long long>(m));
  else if (m > 0)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(m), static_cast<long long>(sec));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(sec));
  return buf;
}

std::string ProgressBar::format_rate(double v) {
  char buf[32];
  if (!std::isfinite(v)) return "--";
  if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e4)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string ProgressBar::render(const std::string& extra) const {
  const double t = elapsed();
  const int64_t progressed = done_ - done_at_start_;
  const double rate = t > 0 ? static_cast<double>(progressed) / t : 0.0;
  const double eta = (rate > 0 && total_ > 0) ? static_cast<double>(total_ - done_) / rate : -1.0;
  std::string out = label_.empty() ? "" : label_ + " ";
  if (tty_ && total_ > 0) {
    const double frac = std::min(1.0, std::max(0.0, static_cast<double>(done_) / static_cast<double>(total_)));
    const int filled = static_cast<int>(frac * options_.width);
    out += "[" + std::string(static_cast<size_t>(filled), '#') +
           std::string(static_cast<size_t>(options_.width - filled), '.') + "] ";
  }
  char buf[96];
  if (total_ > 0)
    std::snprintf(buf, sizeof buf, "%lld/%lld (%.0f%%)", static_cast<long long>(done_), static_cast<long long>(total_),
                  100.0 * static_cast<double>(done_) / static_cast<double>(total_));
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(done_));
  out += buf;
  if (!extra.empty()) out += "  " + extra;
  out += "  elapsed " + format_duration(t);
  if (total_ > 0) out += "  eta " + (finished_ ? std::string("0s") : format_duration(eta));
  return out;
}

void ProgressBar::draw(const std::string& extra) {
  if (!out_) return;
  const std::string text = render(extra);
  if (tty_) {
    // \033[K clears what a longer previous line left behind.
    std::fprintf(out_, "\r%s\033[K", text.c_str());
    line_open_ = true;
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
  last_draw_ = std::chrono::steady_clock::now();
  drawn_ = true;
}

void ProgressBar::update(int64_t done, const std::string& extra, bool force) {
  if (finished_) return;
  done_ = done;
  last_extra_ = extra;
  const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_draw_).count();
  const double interval = tty_ ? options_.redraw_interval_s : options_.plain_interval_s;
  if (force || !drawn_ || since >= interval) draw(extra);
}

void ProgressBar::finish(const std::string& extra) {
  if (finished_) return;
  finished_ = true;
  draw(extra.empty() ? last_extra_ : extra);
  if (tty_ && out_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  line_open_ = false;
}

void ProgressBar::message(const std::string& text) {
  if (!out_) return;
  if (line_open_) std::fputc('\n', out_);
  std::fprintf(out_, "%s\n", text.c_str());
  line_open_ = false;
  if (tty_ && drawn_ && !finished_) draw(last_extra_);
  std::fflush(out_);
}

}  // namespace atspeed
