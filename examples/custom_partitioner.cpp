// A custom partitioner: orders are routed by region so that each sink
// instance handles one region (instance 0: EU, 1: US, 2: everything else).
#include <string>
#include <vector>

#include <sage/sage.hpp>

namespace {

struct Order {
  std::string region;
  int amount = 0;
  SAGE_FIELDS(region, amount)
};

class RegionPartitioner {
 public:
  int partition(const Order& order, int num_partitions) const {
    if (order.region == "EU") return 0;
    if (order.region == "US") return 1 % num_partitions;
    return 2 % num_partitions;
  }
};

}  // namespace

int main() {
  const std::vector<Order> orders = {{"EU", 10}, {"US", 25}, {"APAC", 7},
                                     {"EU", 3},  {"US", 1},  {"LATAM", 12}};
  sage::LocalEnvironment env("custom_partitioner");
  env.from_collection(orders, {.name = "orders"})
      .partition_custom(RegionPartitioner{}, 3)
      .map([](const Order& o) { return o.region + " order of " + std::to_string(o.amount); },
           {.name = "describe"})
      .print("region desk");
  env.execute();
}
