// Spike detection for -sl / -sg: the z-score of a value against the last 128 accepted values, as llm.c
// does, so that a step whose loss or gradient norm jumps far above the recent ones can be skipped.
#pragma once

#include <cmath>
#include <vector>

#include <nlohmann/json.hpp>

#include "optim/step_gate.h"

namespace coldstart {

class OutlierDetector {
public:
    static constexpr size_t kWindow = 128;

    // The limit that skips a value whose z-score, (x - mean) / std over the window, exceeds z: inactive
    // for z <= 0, until the window is full (too little history to judge) and while std is 0.
    SpikeLimit limit(double z) const {
        if (z <= 0 || values_.size() < kWindow) return {};
        double mean = 0, var = 0;
        for (double v : values_) mean += v;
        mean /= double(values_.size());
        for (double v : values_) var += (v - mean) * (v - mean);
        const double std = std::sqrt(var / double(values_.size()));
        if (!(std > 0)) return {};
        return {true, mean, std, z};
    }

    void add(double x) {  // only finite values of steps that were taken
        if (values_.size() < kWindow) values_.push_back(x);
        else values_[next_++ % kWindow] = x;
    }

    // The window as JSON (doubles round-trip exactly), for checkpoints.
    nlohmann::json to_json() const { return {{"values", values_}, {"next", next_}}; }
    void from_json(const nlohmann::json& j) {
        values_ = j.at("values").get<std::vector<double>>();
        next_ = j.at("next").get<size_t>();
    }

private:
    std::vector<double> values_;
    size_t next_ = 0;
};

}  // namespace coldstart
