package vidspark;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.execution.command.SetCommand;
import org.apache.spark.sql.internal.SQLConf;

import scala.Function1;
import scala.Option;
import scala.Tuple2;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A Spark SQL extension that makes every session of its application read-only once
 * {@link #enable()} was called. A statement fails analysis with "read-only" when its plan (or a
 * subquery's) contains:
 * <ul>
 * <li>a command (a write, DDL, cache, ADD JAR, ...) other than the metadata commands below;</li>
 * <li>a SET that assigns a value (reading an option is allowed), or RESET;</li>
 * <li>reflection (reflect, java_method, try_reflect), which calls any Java method.</li>
 * </ul>
 * Once enabled, SQL on file paths must stay off (spark.sql.runSQLOnFiles=false): a session where
 * it was turned back on (e.g. through a client's connection settings) can run nothing.
 * The vidspark SQL server registers its tables and views first, then enables it, so SQL clients
 * can query but never change the store; `vidspark sql` does the same when it starts Spark itself.
 * Compiled by `python -m vidspark.session --install-jars`.
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
        "SetCatalogCommand", "SetCommand"));

    /** Expressions that call arbitrary code. */
    private static final Set<String> REFUSED_EXPRESSIONS = new HashSet<>(Arrays.asList(
        "CallMethodViaReflection", "TryReflect"));

    public static void enable() {
        enabled = true;
    }

    public static boolean isEnabled() {
        return enabled;
    }

    private static UnsupportedOperationException refused(String what) {
        return new UnsupportedOperationException(
            "vidspark SQL is read-only: " + what + " is not allowed "
            + "(run jobs with `vidspark` or spark-submit to change the tables)");
    }

    static void check(LogicalPlan plan) {
        if (!enabled) {
            return;
        }
        if (SQLConf.get().runSQLonFile()) {
            throw refused("SQL on file paths (spark.sql.runSQLOnFiles was turned on)");
        }
        plan.foreachWithSubqueries(new AbstractFunction1<LogicalPlan, BoxedUnit>() {
            @Override
            public BoxedUnit apply(LogicalPlan node) {
                String name = node.getClass().getSimpleName();
                if (node instanceof Command && !ALLOWED.contains(name)) {
                    throw refused(name);
                }
                if (node instanceof SetCommand) {
                    Option<Tuple2<String, Option<String>>> kv = ((SetCommand) node).kv();
                    if (kv.isDefined() && kv.get()._2().isDefined()) {
                        throw refused("SET " + kv.get()._1() + "=...");
                    }
                }
                scala.collection.Iterator<Expression> expressions = node.expressions().iterator();
                while (expressions.hasNext()) {
                    expressions.next().foreach(new AbstractFunction1<Expression, BoxedUnit>() {
                        @Override
                        public BoxedUnit apply(Expression e) {
                            if (REFUSED_EXPRESSIONS.contains(e.getClass().getSimpleName())) {
                                throw refused(e.prettyName());
                            }
                            return BoxedUnit.UNIT;
                        }
                    });
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
