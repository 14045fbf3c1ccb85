// Recipes: named presets of optimizer and schedule options for the paper's comparisons (--recipe NAME).
// A recipe is a JSON object of {option: value} applied before the config file and the flags, so anything
// given besides it wins. Recipes leave the learning rate alone: it is what a study sweeps.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace coldstart {

const nlohmann::json* find_recipe(const std::string& name);  // nullptr if there is no such recipe
// A recipe or option name retired when the Lion family was renamed: what to use now; nullptr otherwise.
const char* retired_name(const std::string& name);
std::string recipe_names();                                  // "paper-adamw, paper-adamw-nobc, ..."
std::string recipes_help();                                  // the list for --help: name, what it is, its options

}  // namespace coldstart
