// A progress bar for long-running loops (training, teacher data, benchmarks). No torch.
//
// On a terminal the line is redrawn in place with '\r' (at most every redraw_interval_s); when the
// stream is a file or a pipe (a job log), a plain line is printed every plain_interval_s instead, so
// logs stay readable. The caller passes the fields it cares about as "extra" text
// ("loss 2.31  12.3k tok/s"); the bar adds done/total, percentage, elapsed time and the ETA from
// the rate since the bar (re)started.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace atspeed {

struct ProgressOptions {
  double redraw_interval_s = 0.1;  // terminal: minimum time between redraws
  double plain_interval_s = 30.0;  // file/pipe: time between plain lines (0 = every update)
  int width = 24;                  // bar characters (terminal only)
  int force_tty = -1;              // -1: detect with isatty; 0/1: force (tests)
};

class ProgressBar {
 public:
  // `done_at_start` lets a resumed loop start part-way without distorting the rate.
  ProgressBar(std::string label, int64_t total, std::FILE* out = stderr, ProgressOptions options = {},
              int64_t done_at_start = 0);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Records progress; draws when the interval has passed (or `force`).
  void update(int64_t done, const std::string& extra = "", bool force = false);
  // Draws the final state and ends the line. Idempotent.
  void finish(const std::string& extra = "");
  // Prints a message on its own line without breaking a terminal bar (the bar is redrawn after).
  void message(const std::string& text);

  // The text of the bar for the current state (without '\r' or newline).
  std::string render(const std::string& extra) const;
  bool is_tty() const { return tty_; }

  // "1h02m", "3m05s", "42s", "--" for a negative or non-finite value.
  static std::string format_duration(double seconds);
  // "950", "12.3k", "4.56M".
  static std::string format_rate(double per_second);

 private:
  void draw(const std::string& extra);
  double elapsed() const;

  std::string label_;
  int64_t total_;
  std::FILE* out_;
  ProgressOptions options_;
  bool tty_;
  int64_t done_ = 0;
  int64_t done_at_start_ = 0;
  std::string last_extra_;
  bool finished_ = false;
  bool line_open_ = false;  // a '\r' line is on the terminal without a newline
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

}  // namespace atspeed
