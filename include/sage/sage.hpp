// The one header a sage program includes.
#pragma once

#include "sage/async_function.hpp"
#include "sage/data_stream.hpp"
#include "sage/environment.hpp"
#include "sage/error.hpp"
#include "sage/functions.hpp"
#include "sage/job_result.hpp"
#include "sage/metrics.hpp"
#include "sage/options.hpp"
#include "sage/runtime_context.hpp"
#include "sage/serialization.hpp"
#include "sage/stable_hash.hpp"
#include "sage/state.hpp"
#include "sage/remote_environment.hpp"
