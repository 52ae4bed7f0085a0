package vidspark;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;

import scala.Function1;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A Spark SQL extension that makes every session of its application read-only once
 * {@link #enable()} was called: a statement whose plan contains a command (a write, DDL, cache,
 * ADD JAR, ...) other than the metadata commands below fails analysis with "read-only". The
 * vidspark SQL server registers its tables and views first, then enables it, so SQL clients can
 * query but never change the store. Compiled by `python -m vidspark.session --install-jars`.
 */
public final class ReadOnlyExtension extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {

    private static volatile boolean enabled = false;

    /** Commands that only read metadata or set the session's options. */
    private static final Set<String> ALLOWED = new HashSet<>(Arrays.asList(
        "ShowTables", "ShowTablesCommand", "ShowTableExtended", "ShowViews", "ShowNamespaces",
        "ShowColumns", "ShowColumnsCommand", "ShowFunctions", "ShowFunctionsCommand",
        "ShowCreateTable", "ShowCreateTableCommand", "ShowCreateTableAsSerdeCommand",
        "ShowTableProperties", "ShowTablePropertiesCommand", "ShowPartitions",
        "ShowPartitionsCommand", "ShowCatalogs", "ShowCurrentNamespace",
        "ShowCurrentNamespaceCommand", "DescribeRelation", "DescribeTableCommand",
        "DescribeColumn", "DescribeColumnCommand", "DescribeNamespace", "DescribeFunction",
        "DescribeFunctionCommand", "DescribeQueryCommand", "DescribeCommandBase",
        "ExplainCommand", "SetCatalogAndNamespace", "SetNamespaceCommand",
        "SetCatalogCommand", "SetCommand", "ResetCommand"));

    public static void enable() {
        enabled = true;
    }

    public static boolean isEnabled() {
        return enabled;
    }

    static void check(LogicalPlan plan) {
        if (!enabled) {
            return;
        }
        plan.foreach(new AbstractFunction1<LogicalPlan, BoxedUnit>() {
            @Override
            public BoxedUnit apply(LogicalPlan node) {
                String name = node.getClass().getSimpleName();
                if (node instanceof Command && !ALLOWED.contains(name)) {
                    throw new UnsupportedOperationException(
                        "vidspark sql-server is read-only: " + name + " is not allowed "
                        + "(run jobs with `vidspark` or spark-submit to change the tables)");
                }
                return BoxedUnit.UNIT;
            }
        });
    }

    @Override
    public BoxedUnit apply(SparkSessionExtensions extensions) {
        extensions.injectCheckRule(
            new AbstractFunction1<SparkSession, Function1<LogicalPlan, BoxedUnit>>() {
                @Override
                public Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
                    return new AbstractFunction1<LogicalPlan, BoxedUnit>() {
                        @Override
                        public BoxedUnit apply(LogicalPlan plan) {
                            check(plan);
                            return BoxedUnit.UNIT;
                        }
                    };
                }
            });
        return BoxedUnit.UNIT;
    }
}
