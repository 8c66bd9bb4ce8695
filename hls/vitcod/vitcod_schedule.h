// ViTCoD's pipeline depths: the common nests (hls/common/schedule.h) at the widths of this accelerator's
// MAC lines and softmax unit. vitaccel/sim/vitcod/attention.py uses the same values, and
// tests/test_cycle_model_vs_hls.py checks them against this file (vitaccel_schedule_constants).
#ifndef VITACCEL_VITCOD_SCHEDULE_H
#define VITACCEL_VITCOD_SCHEDULE_H

#include "schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace vitcod_sched {

static const int PIPE_DOT = sched::pipe_dot(cfg::vitcod::MACS_PER_LINE);
static const int PIPE_RQ = sched::PIPE_RQ;
static const int PIPE_MIX = sched::pipe_mix(cfg::vitcod::MACS_PER_LINE);
static const int PIPE_SM_MAX = sched::pipe_sm_max(cfg::vitcod::SOFTMAX_LANES);
static const int PIPE_SM_EXP = sched::pipe_sm_exp(cfg::vitcod::SOFTMAX_LANES);
static const int PIPE_DIV = sched::PIPE_DIV;

}  // namespace vitcod_sched
}  // namespace vitaccel

#endif  // VITACCEL_VITCOD_SCHEDULE_H
