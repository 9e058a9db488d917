# Runs moto's server (the AWS API emulator of the local stack) with two fixes and one addition.
# The Rust side (moto.rs) runs this file with `python -c`, followed by moto_server's arguments.
# Nothing else in moto changes; the parts below patch moto 5.2.x (tests/requirements.txt).
#
# 1. Kinesis: finding the newest sequence number and where GetRecords resumes both scanned every
#    record of the shard (the first once per record put, which made a large feed quadratic) and
#    become direct lookups with the same results; put_record gets the lock it lacks.
# 2. Quieter logging (one werkzeug line per request costs the single moto process time).
# 3. Step Functions RedriveExecution, with the semantics AWS documents (see REDRIVE below).
import copy
import datetime
import sys
import threading

# --- 1. Kinesis ---------------------------------------------------------------------------------
from moto.kinesis import models as k


def newest(self):
    return next(reversed(self.records)) if self.records else 0


def get_records(self, last_sequence_id, limit):
    last = int(last_sequence_id)
    results = []
    if not self.records:
        return results, last, 0
    newest_seq = next(reversed(self.records))
    seq = max(last + 1, next(iter(self.records)))
    while seq <= newest_seq and (not limit or len(results) < limit):
        record = self.records.get(seq)
        if record is not None:
            results.append(record)
            last = seq
        seq += 1
    behind = self.records[newest_seq].created_at - results[-1].created_at if results else 0.0
    return results, last, int(behind * 1000)


k.Shard.get_max_sequence_number = newest
k.Shard.get_records = get_records

# moto's put_record reads the newest sequence number and then writes the next one, with no
# lock: two PutRecords calls on one shard at once can get the same number, and one record
# silently replaces the other. Kinesis takes concurrent producers, so serialise it here.
put_lock = threading.Lock()
put_record = k.Shard.put_record


def locked_put_record(self, *args, **kwargs):
    with put_lock:
        return put_record(self, *args, **kwargs)


k.Shard.put_record = locked_put_record

# --- 2. Logging ---------------------------------------------------------------------------------
import logging

logging.getLogger("werkzeug").setLevel(logging.WARNING)

# --- 3. RedriveExecution ------------------------------------------------------------------------
# What AWS documents (RedriveExecution API reference; "Redriving executions" in the developer
# guide; DescribeExecution's redriveStatus / redriveStatusReason):
# - a FAILED, TIMED_OUT or ABORTED Standard execution that did not complete successfully in the
#   last 14 days can be redriven; it continues from the unsuccessful step with the same input,
#   the same execution ARN and the same definition, and the steps that succeeded are not re-run;
# - for a Parallel state (or an inline Map) only the branches that failed or were aborted run
#   again; the branches that succeeded keep their output;
# - the execution is RUNNING again, then ends with its new status; its history keeps every
#   earlier event, then an ExecutionRedriven event (executionRedrivenEventDetails.redriveCount),
#   then the events of the resumed run;
# - DescribeExecution gives redriveCount (0 until redriven), redriveDate (of the last redrive),
#   and redriveStatus REDRIVABLE or NOT_REDRIVABLE with a redriveStatusReason such as
#   "Execution is SUCCEEDED and cannot be redriven." or "Execution redrivable period exceeded.";
# - RedriveExecution on an execution that is not redrivable fails with ExecutionNotRedrivable.
#
# How: moto's interpreter is resumed, not re-run. While an execution runs, `REDRIVE` remembers
# the top-level state it last entered and that state's input (that is the state an unsuccessful
# execution stopped in), and for each Parallel state the output of every branch that ended
# successfully. A redrive builds a new interpreter environment for the same `Execution` object
# (same ARN, same input and context object, the same event list, so event ids continue), adds
# ExecutionRedriven, and runs the parsed definition from the remembered state with the
# remembered input. When that state is a Parallel state, the branches whose output is remembered
# are not started again: their output takes their place in the state's result.
#
# Limits (none matter for this project's state machine): Map states re-run every iteration;
# a Parallel or Map nested inside a branch re-runs whole with that branch; workflow variables
# (Assign) set before the failed state are not restored; a redrive after TIMED_OUT counts the
# execution's TimeoutSeconds again from the redrive.
#
# The redrive window (14 days in AWS, counted here from the execution's stop date) can be
# changed locally so a test can make an execution "too old": moto's own config API takes it,
#   POST /moto-api/config
#   {"stepfunctions": {"execute_state_machine": true, "redrive_window_seconds": 0}}
# (moto replaces the whole "stepfunctions" section, so always send execute_state_machine too).
from moto.core.config import default_user_config
from moto.stepfunctions import responses as sfn_responses
from moto.stepfunctions.exceptions import AWSError
from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (
    branches_decl,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branch_worker import (
    BranchWorker,
)
from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded
from moto.stepfunctions.parser.asl.eval.states import ContextObjectData, StateMachineData
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.stepfunctions.parser.utils import TMP_THREADS

DEFAULT_REDRIVE_WINDOW_SECONDS = 14 * 24 * 3600
UNSUCCESSFUL = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED)


class ExecutionNotRedrivable(AWSError):
    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


class ResumePoints:
    """Per execution ARN: the top-level state last entered with its input, and the outputs of
    the Parallel branches that succeeded (by Parallel state name, then branch index)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = {}  # arn -> (state name, state input)
        self._branches = {}  # arn -> {parallel state name: {branch index: output}}
        self._reuse = {}  # arn -> parallel state name whose remembered branches a redrive reuses

    def entered(self, arn, name, state_input):
        with self._lock:
            self._state[arn] = (name, copy.deepcopy(state_input))

    def resume_point(self, arn):
        with self._lock:
            return self._state.get(arn)

    def branches_ended(self, arn, parallel, outputs):
        with self._lock:
            self._branches.setdefault(arn, {})[parallel] = copy.deepcopy(outputs)

    def arm_reuse(self, arn, parallel):
        with self._lock:
            self._reuse[arn] = parallel

    def take_reusable(self, arn, parallel):
        """The branch outputs a redrive reuses, once, for the Parallel state it resumes in."""
        with self._lock:
            if self._reuse.get(arn) != parallel:
                return {}
            del self._reuse[arn]
            return copy.deepcopy(self._branches.get(arn, {}).get(parallel, {}))

    def forget(self, arn):
        """A SUCCEEDED execution can never be redriven: drop what was kept for it."""
        with self._lock:
            self._state.pop(arn, None)
            self._branches.pop(arn, None)
            self._reuse.pop(arn, None)


REDRIVE = ResumePoints()


def execution_arn(env):
    return env.states.context_object.context_object_data["Execution"]["Id"]


# Remember the top-level state each execution enters, with its input (frames are the insides of
# Parallel branches and Map iterations: a redrive resumes at the top-level state around them).
state_eval_body = CommonStateField._eval_body


def remembering_eval_body(self, env):
    if not env.is_frame():
        REDRIVE.entered(execution_arn(env), self.name, env.states.get_input())
    return state_eval_body(self, env)


CommonStateField._eval_body = remembering_eval_body


def branches_eval_body(self, env):
    """moto's BranchesDecl._eval_body, plus: remember each branch that ended successfully, and
    in a redrive start only the branches that did not."""
    input_val = env.stack.pop()
    arn = execution_arn(env)
    parallel = env.states.context_object.context_object_data["State"]["Name"]
    outputs = REDRIVE.take_reusable(arn, parallel)

    pool = branches_decl.BranchWorkerPool(workers_num=len(self.programs) - len(outputs))
    workers = {}
    for index, program in enumerate(self.programs):
        if index in outputs:
            continue
        env_frame = env.open_inner_frame()
        env_frame.states.reset(input_value=input_val)
        worker = BranchWorker(branch_worker_comm=pool, program=program, env=env_frame)
        workers[index] = worker
        worker.start()
    if workers:
        pool.wait()

    for index, worker in workers.items():
        if isinstance(worker.env.program_state(), ProgramEnded):
            outputs[index] = worker.env.states.get_input()
    REDRIVE.branches_ended(arn, parallel, outputs)

    exit_event_details = pool.get_exit_event_details()
    if exit_event_details is not None:
        for worker in workers.values():
            worker.stop(stop_date=datetime.datetime.now(), cause=None, error=None)
            env.close_frame(worker.env)
        raise FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=CustomErrorName(error_name=exit_event_details.get("error")),
                event_type=HistoryEventType.ExecutionFailed,
                event_details=EventDetails(executionFailedEventDetails=exit_event_details),
            )
        )
    for worker in workers.values():
        env.close_frame(worker.env)
    env.stack.append([outputs[index] for index in range(len(self.programs))])


branches_decl.BranchesDecl._eval_body = branches_eval_body


# Forget succeeded executions; keep the rest for a redrive.
reflect_execution_status = BaseExecutionWorkerCommunication._reflect_execution_status


def reflecting_status(self):
    reflect_execution_status(self)
    if self.execution.exec_status == ExecutionStatus.SUCCEEDED:
        REDRIVE.forget(self.execution.exec_arn)


BaseExecutionWorkerCommunication._reflect_execution_status = reflecting_status


def redrive_window_seconds():
    section = default_user_config.get("stepfunctions", {})
    return int(section.get("redrive_window_seconds", DEFAULT_REDRIVE_WINDOW_SECONDS))


def not_redrivable_reason(execution):
    """None if `execution` can be redriven now, else AWS's redriveStatusReason."""
    status = execution.exec_status
    if status not in UNSUCCESSFUL:
        return f"Execution is {ExecutionStatus(status).value} and cannot be redriven."
    stopped = execution.stop_date or execution.start_date
    age = datetime.datetime.now(tz=datetime.timezone.utc) - stopped
    if age.total_seconds() > redrive_window_seconds():
        return "Execution redrivable period exceeded."
    if REDRIVE.resume_point(execution.exec_arn) is None:
        return "Execution has no state to resume at."
    return None


def redrive(execution):
    """Resumes `execution` (an unsuccessful one) at the state it stopped in; see above."""
    reason = not_redrivable_reason(execution)
    if reason is not None:
        raise ExecutionNotRedrivable(reason)
    state_name, state_input = REDRIVE.resume_point(execution.exec_arn)
    old_env = execution.exec_worker.env
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    execution.redrive_count = getattr(execution, "redrive_count", 0) + 1
    execution.redrive_date = now

    details = execution.get_start_execution_details()
    machine = execution.get_start_state_machine_details()
    execution_data = dict(
        Id=details.arn,
        Input=details.inpt,
        Name=details.name,
        RoleArn=details.role_arn,
        StartTime=details.start_time,
        RedriveCount=execution.redrive_count,
        RedriveTime=now.isoformat(),
    )
    last_event_id = old_env.event_history_context.last_published_event_id
    env = Environment(
        aws_execution_details=execution._get_start_aws_execution_details(),
        execution_type=machine.typ,
        context=ContextObjectData(
            Execution=execution_data,
            StateMachine=StateMachineData(Id=machine.arn, Name=machine.name),
        ),
        event_history_context=EventHistoryContext(previous_event_id=last_event_id),
        cloud_watch_logging_session=execution._cloud_watch_logging_session,
        activity_store=execution._activity_store,
    )
    env.event_manager = old_env.event_manager
    env.event_manager.add_event(
        context=env.event_history_context,
        event_type=HistoryEventType.ExecutionRedriven,
        event_details={
            "executionRedrivenEventDetails": {"redriveCount": execution.redrive_count}
        },
    )
    env.states.reset(input_value=state_input)
    env.next_state_name = state_name
    REDRIVE.arm_reuse(execution.exec_arn, state_name)
    program = AmazonStateLanguageParser.parse(machine.definition)[0]

    worker = execution.exec_worker
    worker.env = env
    worker._execution_communication = BaseExecutionWorkerCommunication(execution)
    execution.exec_status = ExecutionStatus.RUNNING
    execution.stop_date = None
    execution.error = None
    execution.cause = None
    execution.output = None

    def resume():
        # Program.eval, from `state_name` instead of StartAt.
        timeout = program.timeout_seconds.timeout_seconds if program.timeout_seconds else None
        runner = threading.Thread(target=EvalComponent.eval, args=(program, env), daemon=True)
        TMP_THREADS.append(runner)
        runner.start()
        runner.join(timeout=timeout)
        if runner.is_alive():
            env.set_timed_out()
        worker._execution_communication.terminated()

    thread = threading.Thread(target=resume, daemon=True)
    TMP_THREADS.append(thread)
    thread.start()
    return now


def redrive_fields(execution):
    fields = {"redriveCount": getattr(execution, "redrive_count", 0)}
    if getattr(execution, "redrive_date", None) is not None:
        fields["redriveDate"] = execution.redrive_date
    if hasattr(execution, "exec_status"):
        reason = not_redrivable_reason(execution)
        fields["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
        if reason:
            fields["redriveStatusReason"] = reason
    return fields


def redrive_execution(self):
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    if not hasattr(execution, "exec_worker"):
        raise ExecutionNotRedrivable(
            "Redrive needs Step Functions execution turned on (execute_state_machine)."
        )
    return sfn_responses.ActionResult({"redriveDate": redrive(execution)})


describe_execution = sfn_responses.StepFunctionResponse.describe_execution


def describe_execution_with_redrive(self):
    result = describe_execution(self)
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    result.result.update(redrive_fields(execution))
    return result


list_executions = sfn_responses.StepFunctionResponse.list_executions


def list_executions_with_redrive(self):
    result = list_executions(self)
    machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
    by_arn = {e.execution_arn: e for e in machine.executions}
    for item in result.result["executions"]:
        execution = by_arn[item["executionArn"]]
        item["redriveCount"] = getattr(execution, "redrive_count", 0)
        if getattr(execution, "redrive_date", None) is not None:
            item["redriveDate"] = execution.redrive_date
    return result


sfn_responses.StepFunctionResponse.redrive_execution = redrive_execution
sfn_responses.StepFunctionResponse.describe_execution = describe_execution_with_redrive
sfn_responses.StepFunctionResponse.list_executions = list_executions_with_redrive

# --- run ----------------------------------------------------------------------------------------
from moto.server import main

sys.argv[0] = "moto_server"
sys.exit(main())
