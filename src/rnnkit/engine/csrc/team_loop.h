// A time loop whose steps are too small for a parallel region each, run alone or on a team of
// threads, whichever is faster at the moment: see run_time_loop.
#pragma once

#include "kernel_support.h"

#include <chrono>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnnkit {

// Steps timed together, one way or the other: a parallel region opens once per stretch.
constexpr int64_t kStretchSteps = 32;

// Where the threads of a team wait for each other between the phases of a step (an orphaned
// barrier binds to the team that runs it). Only on a team: inside another parallel region, a
// barrier of a thread running alone would wait for that region's other threads.
inline void wait_for_team() {
#pragma omp barrier
}

// Runs step(t, part, parts) for t = 0 .. steps - 1 in order, where step does its share ``part`` of
// ``parts`` of step t's work and, where parts > 1, calls wait_for_team() between phases that read
// what the others wrote; the loop waits for the team after each step, before the next reads the
// state.
//
// A step of a reservoir takes microseconds (at 1000 units and 1% density, 10,000 multiply-adds and
// 1000 tanh), so a team that stays together over a stretch of steps, meeting at barriers, is the
// only way to split it; on an idle 2-core machine it runs 3000 such steps in 24 ms, one thread in
// 34 ms. But a team waits at every barrier for its slowest thread, and where another process holds
// a core that thread is descheduled for milliseconds: next to one busy process (nice 19) the same
// run took 283 ms (median; up to 5 s), one thread 71 ms. Which is faster depends on the machine's
// load, so the loop times both: a stretch alone, a stretch on the team, then stretches the faster
// way, timing the slower again after 2, 4, 8, ... stretches. A stretch on the team that falls behind
// twice the pace of the last one alone stops there and the steps left run alone, so that a probe
// costs little where the team is slow. Both ways compute the same numbers: the split changes who
// computes a value, never how.
template <typename Step>
void run_time_loop(int64_t steps, int threads, const Step& step) {
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  double per_step[2] = {-1.0, -1.0};  // seconds per step, alone and on the team, when last timed
  int64_t stretches_to_probe = 2, since_probe = 0;
  for (int64_t t = 0; t < steps;) {
    const int64_t t0 = t, t1 = std::min(steps, t0 + kStretchSteps);
    bool team = false;
    if (threads > 1 && steps >= 4 * kStretchSteps) {  // a short loop runs alone: probing would cost more
      if (per_step[0] < 0.0 || per_step[1] < 0.0) {
        team = per_step[0] >= 0.0;  // the first stretch alone, the second on the team
      } else {
        team = per_step[1] < per_step[0];
        if (++since_probe == stretches_to_probe) {  // time the slower way again
          team = !team;
          since_probe = 0;
          stretches_to_probe *= 2;
        }
      }
    }
    const auto started = Clock::now();
#ifdef _OPENMP
    if (team) {
      const double allowed_per_step = 2.0 * per_step[0];
      // Whether the team has fallen behind after step s, in behind[s % 2]: written by part 0 before
      // the barrier that ends step s, read by all after it; the other slot is the one part 0 may
      // write meanwhile, so no thread reads a decision about a later step.
      bool behind[2] = {false, false};
#pragma omp parallel num_threads(threads)
      {
        const int part = omp_get_thread_num(), parts = omp_get_num_threads();
        for (int64_t s = t0; s < t1; ++s) {
          step(s, part, parts);
          if (part == 0) behind[s % 2] = seconds_since(started) > allowed_per_step * double(s + 1 - t0);
          wait_for_team();
          if (behind[s % 2]) break;
          if (part == 0) t = s + 1;
        }
      }
      per_step[1] = seconds_since(started) / double(t - t0);
      continue;  // where the team fell behind, the rest of its stretch runs alone
    }
#endif
    for (; t < t1; ++t) step(t, 0, 1);
    per_step[0] = seconds_since(started) / double(t1 - t0);
  }
}
// [begin, end) of part ``part`` of ``count`` items cut into ``parts`` near-equal runs.
inline std::pair<int64_t, int64_t> share(int64_t count, int part, int parts) {
  return {count * part / parts, count * (part + 1) / parts};
}

}  // namespace rnnkit
