/* ferry: an embeddable forward and reverse proxy engine. Umbrella header. */
#ifndef FERRY_H
#define FERRY_H

#include "ferry/export.h"
#include "ferry/version.h"
#include "ferry/error.h"
#include "ferry/alloc.h"
#include "ferry/view.h"
#include "ferry/session.h"
#include "ferry/http.h"
#include "ferry/hooks.h"
#include "ferry/direction.h"
#include "ferry/pool.h"
#include "ferry/forward.h"
#include "ferry/router.h"
#include "ferry/engine.h"
#include "ferry/logger.h"
#include "ferry/reverse_config.h"

#endif
